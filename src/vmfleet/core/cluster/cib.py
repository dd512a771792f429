"""The CIB for a `ClusterConfig`: resources, constraints, options, node utilization (pure).

`fragment` is what vmfleet owns in a cluster's `<configuration>`; `merged` puts it into the
current configuration (replacing what the fleet owned before, keeping everything else, and
refusing to touch resources another owner made), so one `cibadmin --replace` applies a whole
change at once; `owned_equal` says whether anything would change. A resource is the fleet's
when it carries the meta attribute `vmfleet-fleet`; a constraint when its id starts with
`vmf-` and it names one of the fleet's resources.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

from vmfleet.core.cluster.model import OWNER_META, ClusterConfig, HaDisk, HaVm
from vmfleet.errors import NotOwnedError

CONSTRAINT_PREFIX = "vmf-"
OPTIONS_ID = "vmf-options"
DEFAULTS_ID = "vmf-rsc-defaults"
SECTIONS = ("crm_config", "nodes", "resources", "constraints", "rsc_defaults")
FENCE_ID = "vmf-fence"


class ForeignResourceError(NotOwnedError):
    """A resource the fleet wants exists in the cluster but belongs to someone else."""


@dataclass(frozen=True, slots=True)
class Fragment:
    """The fleet's part of the configuration, by section."""

    options: ET.Element  # <cluster_property_set>
    defaults: ET.Element  # <meta_attributes> for rsc_defaults
    resources: tuple[ET.Element, ...]
    constraints: tuple[ET.Element, ...]
    utilization: tuple[tuple[str, ET.Element], ...]  # (node uname, <utilization>)


def _sub(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, tag, attrs)


def _nvpairs(parent: ET.Element, tag: str, owner: str, pairs: dict[str, str]) -> ET.Element:
    section = _sub(parent, tag, id=f"{owner}-{tag.split('_')[0]}")
    for name, value in pairs.items():
        _sub(section, "nvpair", id=f"{owner}-{tag.split('_')[0]}-{name}", name=name, value=value)
    return section


def _op(ops: ET.Element, owner: str, name: str, interval: str, timeout: str, **extra: str) -> None:
    role = extra.get("role", "")
    _sub(
        ops,
        "op",
        id=f"{owner}-{name}-{interval}{'-' + role.lower() if role else ''}",
        name=name,
        interval=interval,
        timeout=timeout,
        **extra,
    )


def drbd_clone(config: ClusterConfig, disk: HaDisk) -> ET.Element:
    """`ms_drbd_{vm}_{disk}`: a promotable clone of `ocf:linbit:drbd` (one Promoted node)."""
    clone = ET.Element("clone", {"id": disk.drbd_clone})
    _nvpairs(
        clone,
        "meta_attributes",
        disk.drbd_clone,
        {
            "promotable": "true",
            "promoted-max": "1",
            "promoted-node-max": "1",
            "clone-max": str(config.spec.storage.replicas),
            "clone-node-max": "1",
            "notify": "true",
            OWNER_META: config.fleet,
        },
    )
    rid = disk.drbd_primitive
    primitive = _sub(clone, "primitive", id=rid, **{"class": "ocf"}, provider="linbit", type="drbd")
    _nvpairs(primitive, "instance_attributes", rid, {"drbd_resource": disk.resource})
    ops = _sub(primitive, "operations")
    _op(ops, rid, "monitor", "29s", "20s", role="Promoted")
    _op(ops, rid, "monitor", "31s", "20s", role="Unpromoted")
    _op(ops, rid, "start", "0s", "240s")
    _op(ops, rid, "stop", "0s", "100s")
    _op(ops, rid, "promote", "0s", "90s")
    _op(ops, rid, "demote", "0s", "90s")
    return clone


def vm_primitive(config: ClusterConfig, vm: HaVm) -> ET.Element:
    """`p_virtdom_{vm}`: `ocf:heartbeat:VirtualDomain` with utilization and target-role."""
    rid = vm.resource
    primitive = ET.Element(
        "primitive", {"id": rid, "class": "ocf", "provider": "heartbeat", "type": "VirtualDomain"}
    )
    _nvpairs(
        primitive,
        "instance_attributes",
        rid,
        {
            "config": vm.config,
            "hypervisor": config.spec.hypervisor,
            "migration_transport": config.spec.migration_transport,
            "force_stop": str(vm.force_stop).lower(),
            **(
                {"migrate_options": config.spec.migrate_options}
                if config.spec.migrate_options
                else {}
            ),
        },
    )
    _nvpairs(
        primitive,
        "meta_attributes",
        rid,
        {
            "target-role": "Started" if vm.started else "Stopped",
            "allow-migrate": str(vm.allow_migrate).lower(),
            OWNER_META: config.fleet,
        },
    )
    _nvpairs(
        primitive,
        "utilization",
        rid,
        {
            "cpu": str(vm.vcpus),
            "host_memory": str(vm.memory_mib),
            "hv_memory": str(vm.memory_mib),
            **dict.fromkeys(vm.exclusive, "1"),
        },
    )
    ops = _sub(primitive, "operations")
    _op(ops, rid, "monitor", "10s", "30s")
    _op(ops, rid, "start", "0s", "90s")
    _op(ops, rid, "stop", "0s", "90s")
    _op(ops, rid, "migrate_to", "0s", "120s")
    _op(ops, rid, "migrate_from", "0s", "60s")
    return primitive


def fence_primitive(config: ClusterConfig) -> ET.Element | None:
    fencing = config.spec.fencing
    if not fencing.enabled or fencing.agent is None:
        return None
    primitive = ET.Element("primitive", {"id": FENCE_ID, "class": "stonith", "type": fencing.agent})
    params = {"pcmk_host_list": " ".join(config.spec.nodes), **fencing.params}
    _nvpairs(primitive, "instance_attributes", FENCE_ID, params)
    _nvpairs(primitive, "meta_attributes", FENCE_ID, {OWNER_META: config.fleet})
    _op(_sub(primitive, "operations"), FENCE_ID, "monitor", "60s", "20s")
    return primitive


def constraints(config: ClusterConfig) -> Iterator[ET.Element]:
    """Per disk: colocation with the Promoted clone and promote-then-start; per VM, its node
    scores; between VMs, the (anti-)affinity colocations."""
    for vm in config.vms:
        if config.drbd:
            for disk in vm.disks:
                yield ET.Element(
                    "rsc_colocation",
                    {
                        "id": f"{CONSTRAINT_PREFIX}col-{vm.name}-{disk.name}",
                        "rsc": vm.resource,
                        "with-rsc": disk.drbd_clone,
                        "with-rsc-role": "Promoted",
                        "score": "INFINITY",
                    },
                )
                yield ET.Element(
                    "rsc_order",
                    {
                        "id": f"{CONSTRAINT_PREFIX}ord-{vm.name}-{disk.name}",
                        "first": disk.drbd_clone,
                        "first-action": "promote",
                        "then": vm.resource,
                        "then-action": "start",
                        "kind": "Mandatory",
                    },
                )
        for node, score in vm.node_scores:
            yield ET.Element(
                "rsc_location",
                {
                    "id": f"{CONSTRAINT_PREFIX}loc-{vm.name}-{node}",
                    "rsc": vm.resource,
                    "node": node,
                    "score": score,
                },
            )
    for pair in config.colocations:
        yield ET.Element(
            "rsc_colocation",
            {
                "id": f"{CONSTRAINT_PREFIX}aff-{pair.first}-{pair.second}",
                "rsc": pair.first,
                "with-rsc": pair.second,
                "score": pair.score,
            },
        )


def fragment(config: ClusterConfig) -> Fragment:
    """Everything the fleet owns in the cluster's configuration."""
    options = ET.Element("cluster_property_set", {"id": OPTIONS_ID})
    for name, value in (
        ("stonith-enabled", str(config.spec.fencing.enabled).lower()),
        ("placement-strategy", config.spec.placement_strategy),
    ):
        _sub(options, "nvpair", id=f"{OPTIONS_ID}-{name}", name=name, value=value)
    defaults = ET.Element("meta_attributes", {"id": DEFAULTS_ID})
    _sub(
        defaults,
        "nvpair",
        id=f"{DEFAULTS_ID}-resource-stickiness",
        name="resource-stickiness",
        value=str(config.spec.stickiness),
    )
    resources: list[ET.Element] = []
    fence = fence_primitive(config)
    if fence is not None:
        resources.append(fence)
    for vm in config.vms:
        if config.drbd:
            resources += [drbd_clone(config, disk) for disk in vm.disks]
        resources.append(vm_primitive(config, vm))
    utilization = []
    if config.spec.placement_strategy != "default":
        for node, cpus, memory in config.node_capacity:
            util = ET.Element("utilization", {"id": f"vmf-util-{node}"})
            amounts = {"cpu": cpus, "host_memory": memory, "hv_memory": memory}
            amounts.update(dict.fromkeys(config.exclusive, 1))
            for key, amount in amounts.items():
                _sub(util, "nvpair", id=f"vmf-util-{node}-{key}", name=key, value=str(amount))
            utilization.append((node, util))
    return Fragment(
        options=options,
        defaults=defaults,
        resources=tuple(resources),
        constraints=tuple(constraints(config)),
        utilization=tuple(utilization),
    )
