"""What a fleet asks of a Pacemaker cluster, as frozen data (pure, no I/O).

`wanted(spec, instances, cluster=NAME)` turns the HA VMs of one cluster into `ClusterConfig`:
a `HaVm` per VM (its disks, utilization, node scores, target role) and the pairs of VMs that
must (or should) not share a node. Resource names follow seed 001: `p_virtdom_{vm}`,
`p_drbd_{vm}_{disk}` in the promotable clone `ms_drbd_{vm}_{disk}`, LINSTOR resource
`{vm}_{disk}`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from vmfleet.core.expand import Instance
from vmfleet.spec.models import AffinityTerm, ClusterSpec, FleetSpec
from vmfleet.spec.resolve import ha_settings
from vmfleet.spec.units import GIB, MIB

INFINITY = "INFINITY"
MINUS_INFINITY = "-INFINITY"
PREFERRED_ANTI_AFFINITY = -1000
PREFERRED_AFFINITY = 1000
NODE_PREFERENCE_STEP = 100
OWNER_META = "vmfleet-fleet"


@dataclass(frozen=True, slots=True, kw_only=True)
class HaDisk:
    """One disk: `sda` is the root disk, then the data disks by name (or sdb, sdc…)."""

    name: str
    size_gib: int
    target: str
    resource: str  # LINSTOR/DRBD resource `{vm}_{disk}`, or the file name on shared storage
    path: str  # the block device or file the domain opens

    @property
    def drbd_primitive(self) -> str:
        return f"p_drbd_{self.resource}"

    @property
    def drbd_clone(self) -> str:
        return f"ms_drbd_{self.resource}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HaVm:
    name: str
    vcpus: int
    memory_mib: int
    disks: tuple[HaDisk, ...]
    config: str  # the domain XML file every node reads (VirtualDomain `config=`)
    started: bool
    allow_migrate: bool
    force_stop: bool
    node_scores: tuple[tuple[str, str], ...]  # (node, score) location constraints
    exclusive: tuple[str, ...] = ()  # utilization attributes of its anti-affinity groups

    @property
    def resource(self) -> str:
        return f"p_virtdom_{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Colocation:
    """`first` with `second` at `score` (-INFINITY: never on one node)."""

    first: str
    second: str
    score: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    name: str
    fleet: str
    spec: ClusterSpec
    vms: tuple[HaVm, ...]
    colocations: tuple[Colocation, ...]
    node_capacity: tuple[tuple[str, int, int], ...]  # (node, cpus, memory MiB)
    exclusive: tuple[str, ...] = ()  # utilization attributes each node has 1 of

    @property
    def drbd(self) -> bool:
        return self.spec.storage.type == "linstor"


def disk_layout(instance: Instance, *, storage_type: str, storage_path: str | None) -> list[HaDisk]:
    """The VM's disks on the cluster storage, root disk first."""
    fields = instance.fields
    named = [("sda", fields.disk)]
    for n, data in enumerate(fields.data_disks):
        named.append((data.name or f"sd{chr(ord('b') + n)}", data.size))
    out = []
    for n, (disk, size) in enumerate(named):
        resource = f"{instance.name}_{disk}"
        if storage_type == "linstor":
            path = f"/dev/drbd/by-res/{resource}/0"
        else:
            path = f"{storage_path}/{resource}.qcow2"
        out.append(
            HaDisk(
                name=disk,
                size_gib=max(1, -(-size // GIB)),
                target=f"vd{chr(ord('a') + n)}",
                resource=resource,
                path=path,
            )
        )
    return out


def definitions_dir(cluster: ClusterSpec) -> str:
    """Where the domain XML files go: as configured, else the shared path, else libvirt's."""
    if cluster.definitions:
        return cluster.definitions
    if cluster.storage.type == "shared" and cluster.storage.path:
        return cluster.storage.path
    return "/etc/libvirt/qemu"


def wanted(
    spec: FleetSpec, instances: list[Instance], *, fleet: str, cluster: str
) -> ClusterConfig:
    """The cluster's configuration for the fleet's HA VMs on `cluster` (spec already valid)."""
    cspec = spec.clusters[cluster]
    members: list[tuple[Instance, bool, bool, bool]] = []
    for instance in instances:
        ha = ha_settings(spec, spec.vms[instance.template], instance.index)
        if ha is not None and ha.cluster == cluster:
            members.append((instance, ha.state == "started", ha.allow_migrate, ha.force_stop))
    groups = (
        _exclusive_groups([m[0] for m in members]) if cspec.placement_strategy != "default" else {}
    )
    vms = []
    for instance, started, allow_migrate, force_stop in members:
        fields = instance.fields
        scores: list[tuple[str, str]] = []
        if fields.host:
            scores.append((fields.host, INFINITY))
        prefs = fields.node_preference
        for i, node in enumerate(prefs):
            if node != fields.host:
                scores.append((node, str(NODE_PREFERENCE_STEP * (len(prefs) - i))))
        vms.append(
            HaVm(
                name=instance.name,
                vcpus=fields.vcpus,
                memory_mib=fields.memory // MIB,
                disks=tuple(
                    disk_layout(
                        instance, storage_type=cspec.storage.type, storage_path=cspec.storage.path
                    )
                ),
                config=f"{definitions_dir(cspec)}/{instance.name}.xml",
                started=started,
                allow_migrate=allow_migrate,
                force_stop=force_stop,
                node_scores=tuple(scores),
                exclusive=tuple(a for a, names in sorted(groups.items()) if instance.name in names),
            )
        )
    capacity = tuple(
        (node, spec.hosts[node].capacity.cpus or 0, (spec.hosts[node].capacity.memory or 0) // MIB)
        for node in cspec.nodes
        if node in spec.hosts
    )
    return ClusterConfig(
        name=cluster,
        fleet=fleet,
        spec=cspec,
        vms=tuple(vms),
        colocations=_affinity([m[0] for m in members], groups),
        node_capacity=capacity,
        exclusive=tuple(sorted(groups)),
    )


def _matches(term: AffinityTerm, labels: dict[str, str]) -> bool:
    return any(
        all(labels.get(k) == v for k, v in selector.match_labels.items())
        for selector in term.label_selector
    )


def _exclusive_groups(members: list[Instance]) -> dict[str, set[str]]:
    """Required anti-affinity among VMs that carry the same term and match it: a group whose
    members must each be on a different node, by utilization attribute (each node has 1).

    Utilization rather than -INFINITY colocations: with a colocation one VM is the primary,
    and when its node fails the scheduler places it first and stops the survivor to make room.
    """
    groups: dict[str, set[str]] = {}
    for vm in members:
        rule = vm.fields.affinity.vm_anti_affinity if vm.fields.affinity else None
        for term in rule.required if rule else []:
            if _matches(term, vm.fields.labels):
                groups.setdefault(_group_key(term), set()).add(vm.name)
    return {k: v for k, v in groups.items() if len(v) > 1}


def _group_key(term: AffinityTerm) -> str:
    text = "|".join(
        ",".join(f"{k}={v}" for k, v in sorted(s.match_labels.items())) for s in term.label_selector
    )
    return "vmf-aa-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def _selected(
    term: AffinityTerm, index: dict[tuple[str, str], set[str]], everyone: set[str]
) -> set[str]:
    """The VMs a term's selectors match, through a (label, value) index."""
    out: set[str] = set()
    for selector in term.label_selector:
        chosen = set(everyone)
        for item in selector.match_labels.items():
            chosen &= index.get(item, set())
        out |= chosen
    return out


def _affinity(members: list[Instance], groups: dict[str, set[str]]) -> tuple[Colocation, ...]:
    """Pairwise colocations from vmAffinity / vmAntiAffinity between the cluster's VMs.

    A pair gets one constraint, the strongest asked by either side (required beats preferred);
    pairs inside one exclusive group need none.
    """
    index: dict[tuple[str, str], set[str]] = {}
    for vm in members:
        for item in vm.fields.labels.items():
            index.setdefault(item, set()).add(vm.name)
    everyone = {vm.name for vm in members}
    best: dict[tuple[str, str], str] = {}
    rank = {MINUS_INFINITY: 4, INFINITY: 3}

    def put(a: str, b: str, score: str) -> None:
        key = (a, b) if a < b else (b, a)
        old = best.get(key)
        if old is None or rank.get(score, 0) > rank.get(old, 0):
            best[key] = score

    for vm in members:
        affinity = vm.fields.affinity
        if affinity is None:
            continue
        for rule, hard, soft in (
            (affinity.vm_anti_affinity, MINUS_INFINITY, str(PREFERRED_ANTI_AFFINITY)),
            (affinity.vm_affinity, INFINITY, str(PREFERRED_AFFINITY)),
        ):
            if rule is None:
                continue
            for terms, score in ((rule.required, hard), (rule.preferred, soft)):
                for term in terms:
                    others = _selected(term, index, everyone) - {vm.name}
                    group = groups.get(_group_key(term), set())
                    if score == MINUS_INFINITY and vm.name in group:
                        others -= group  # the group's utilization keeps them apart
                    for other in others:
                        put(vm.name, other, score)
    return tuple(
        Colocation(first=f"p_virtdom_{a}", second=f"p_virtdom_{b}", score=score)
        for (a, b), score in sorted(best.items())
    )
