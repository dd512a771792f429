"""Command lines for a `ClusterConfig`: the `pcs` equivalent of the CIB, and LINSTOR (pure).

`pcs_commands` lets an operator review or apply by hand what `up` applies as one CIB
change (`pcs -f FILE` then `pcs cluster cib-push FILE`). `linstor_create` and
`linstor_delete` follow seed 001's vm_create and vm_delete: per disk a resource definition,
a volume definition and one resource per replica node; deleted resource by resource.
"""

from __future__ import annotations

from vmfleet.core.cluster.cib import CONSTRAINT_PREFIX, FENCE_ID
from vmfleet.core.cluster.model import OWNER_META, ClusterConfig, HaVm

Argv = tuple[str, ...]


def pcs_commands(config: ClusterConfig) -> list[Argv]:
    """The `pcs` commands (each without the `-f FILE` an operator may add)."""
    spec = config.spec
    out: list[Argv] = [
        ("pcs", "property", "set", f"stonith-enabled={str(spec.fencing.enabled).lower()}"),
        ("pcs", "property", "set", f"placement-strategy={spec.placement_strategy}"),
        ("pcs", "resource", "defaults", "update", f"resource-stickiness={spec.stickiness}"),
    ]
    if spec.placement_strategy != "default":
        for node, cpus, memory in config.node_capacity:
            out.append(
                (
                    "pcs", "node", "utilization", node,
                    f"cpu={cpus}", f"host_memory={memory}", f"hv_memory={memory}",
                    *(f"{attr}=1" for attr in config.exclusive),
                )
            )  # fmt: skip
    if spec.fencing.enabled and spec.fencing.agent:
        params = {"pcmk_host_list": " ".join(spec.nodes), **spec.fencing.params}
        out.append(
            (
                "pcs", "stonith", "create", FENCE_ID, spec.fencing.agent,
                *(f"{k}={v}" for k, v in params.items()),
                "meta", f"{OWNER_META}={config.fleet}",
            )
        )  # fmt: skip
    for vm in config.vms:
        out += _vm_commands(config, vm)
    for pair in config.colocations:
        out.append(
            (
                "pcs", "constraint", "colocation", "add", pair.first, "with", pair.second,
                pair.score, f"id={CONSTRAINT_PREFIX}aff-{pair.first}-{pair.second}",
            )
        )  # fmt: skip
    return out


def _vm_commands(config: ClusterConfig, vm: HaVm) -> list[Argv]:
    spec = config.spec
    out: list[Argv] = []
    if config.drbd:
        for disk in vm.disks:
            out += [
                (
                    "pcs", "resource", "create", disk.drbd_primitive, "ocf:linbit:drbd",
                    f"drbd_resource={disk.resource}",
                    "op", "monitor", "interval=29s", "role=Promoted",
                    "op", "monitor", "interval=31s", "role=Unpromoted",
                ),
                (
                    "pcs", "resource", "promotable", disk.drbd_primitive, disk.drbd_clone,
                    "promoted-max=1", "promoted-node-max=1",
                    f"clone-max={spec.storage.replicas}", "clone-node-max=1", "notify=true",
                    f"{OWNER_META}={config.fleet}",
                ),
            ]  # fmt: skip
    out += [
        (
            "pcs", "resource", "create", vm.resource, "ocf:heartbeat:VirtualDomain",
            f"config={vm.config}", f"hypervisor={spec.hypervisor}",
            f"migration_transport={spec.migration_transport}",
            f"force_stop={str(vm.force_stop).lower()}",
            *([f"migrate_options={spec.migrate_options}"] if spec.migrate_options else []),
            "meta", f"target-role={'Started' if vm.started else 'Stopped'}",
            f"allow-migrate={str(vm.allow_migrate).lower()}", f"{OWNER_META}={config.fleet}",
        ),
        (
            "pcs", "resource", "utilization", vm.resource,
            f"cpu={vm.vcpus}", f"host_memory={vm.memory_mib}", f"hv_memory={vm.memory_mib}",
            *(f"{attr}=1" for attr in vm.exclusive),
        ),
    ]  # fmt: skip
    if config.drbd:
        for disk in vm.disks:
            out += [
                (
                    "pcs", "constraint", "colocation", "add", vm.resource, "with", "Promoted",
                    disk.drbd_clone, "INFINITY", f"id={CONSTRAINT_PREFIX}col-{vm.name}-{disk.name}",
                ),
                (
                    "pcs", "constraint", "order", "promote", disk.drbd_clone, "then", "start",
                    vm.resource, f"id={CONSTRAINT_PREFIX}ord-{vm.name}-{disk.name}",
                ),
            ]  # fmt: skip
    for node, score in vm.node_scores:
        out.append(
            (
                "pcs", "constraint", "location", "add",
                f"{CONSTRAINT_PREFIX}loc-{vm.name}-{node}", vm.resource, node, score,
            )
        )  # fmt: skip
    return out


def replica_nodes(config: ClusterConfig, vm: HaVm) -> list[str]:
    """The nodes holding a VM's replicas: its preferred nodes first, then the cluster order."""
    preferred = [node for node, _ in vm.node_scores]
    ordered = preferred + [n for n in config.spec.nodes if n not in preferred]
    return ordered[: config.spec.storage.replicas]


def linstor_create(config: ClusterConfig, vm: HaVm) -> list[Argv]:
    """Seed 001's "Create VM storage", per disk."""
    pool = config.spec.storage.pool or ""
    out: list[Argv] = []
    for disk in vm.disks:
        out += [
            ("linstor", "resource-definition", "create", disk.resource),
            ("linstor", "volume-definition", "create", disk.resource, f"{disk.size_gib}G"),
        ]
        out += [
            ("linstor", "resource", "create", node, disk.resource, "--storage-pool", pool)
            for node in replica_nodes(config, vm)
        ]
    return out


def linstor_delete(config: ClusterConfig, vm: HaVm) -> list[Argv]:
    """Seed 001's "Delete LINSTOR resources": each replica, then the definition."""
    out: list[Argv] = []
    for disk in vm.disks:
        out += [
            ("linstor", "resource", "delete", node, disk.resource)
            for node in replica_nodes(config, vm)
        ]
        out.append(("linstor", "resource-definition", "delete", disk.resource))
    return out
