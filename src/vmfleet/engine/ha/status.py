"""What the cluster says about each HA VM (the cluster's view, never libvirt's alone)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vmfleet.core.cluster import ClusterConfig, HaVm
from vmfleet.drivers.drbd import DrbdView
from vmfleet.drivers.pacemaker import ClusterStatus, NodeStatus, Operation
from vmfleet.engine.ha.disks import DiskState, disk_states

MOVE_PREFIX = "cli-prefer-"


@dataclass(frozen=True, slots=True)
class Migration:
    """A live migration in flight; a node is None while crm_mon does not name it yet."""

    source: str | None
    target: str | None


@dataclass(frozen=True, slots=True)
class HaVmState:
    """One HA VM: where it runs, what the cluster wants, failures, disks, rogue copies."""

    vm: str
    cluster: str
    nodes: tuple[str, ...]
    state: str  # started, stopped, failed, missing (not in the CIB), split (two copies),
    # or an operation in flight (migrating, starting, stopping)
    target_role: str | None
    fail_count: int
    disks: tuple[DiskState, ...]
    outside: tuple[str, ...] = ()  # nodes where libvirt runs it but the cluster does not
    migration: Migration | None = None
    # nodes where it is active with an operation still in flight (a start, a stop); a
    # monitor does not count (drivers.pacemaker reads a resource under one as settled)
    unsettled: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """The node(s) it runs on; `A -> B` while it migrates (`?` for a node crm_mon does
        not name yet); the node of an operation in flight (starting, stopping…)."""
        if self.migration:
            return f"{self.migration.source or '?'} -> {self.migration.target or '?'}"
        return ",".join(self.nodes or self.unsettled)

    @property
    def problem(self) -> str | None:
        if self.outside:
            return f"running outside Pacemaker on {', '.join(self.outside)}"
        if self.state in ("failed", "split", "missing"):
            return self.state
        return None


def vm_state(
    config: ClusterConfig,
    vm: HaVm,
    status: ClusterStatus,
    *,
    libvirt_running: dict[str, list[str]] | None = None,
    drbd: Sequence[DrbdView] = (),
) -> HaVmState:
    """The state of one VM from crm_mon (and, when given, what each node's libvirt runs and
    what DRBD reports about its disks on each node)."""
    found = status.resource(vm.resource)
    nodes = tuple(status.running_on(vm.resource))
    moving = migration(status, vm.resource)
    if not found:
        state = "missing"
    elif any(r.failed for r in found):
        state = "failed"
    elif moving:
        state = "migrating"  # on two nodes for a moment: not a split
    elif len(nodes) > 1:
        state = "split"
    elif any(r.pending for r in found):
        state = next(str(r.pending).lower() for r in found if r.pending)  # migrating, starting…
    else:
        state = "started" if nodes else "stopped"
    # libvirt lists a migration's incoming copy on its target: not a copy behind the
    # cluster's back (until crm_mon names the target, the whole migration is excused)
    excused = set(nodes) | ({moving.source, moving.target} if moving else set())
    outside = tuple(
        node
        for node, names in (libvirt_running or {}).items()
        if vm.name in names and node not in excused and not (moving and moving.target is None)
    )
    return HaVmState(
        vm=vm.name,
        cluster=config.name,
        nodes=nodes,
        state=state,
        target_role=found[0].target_role if found else None,
        fail_count=sum(c for _, rid, c in status.fail_counts if rid == vm.resource),
        disks=disk_states(config, vm.disks, status, drbd),
        outside=outside,
        migration=moving,
        unsettled=() if nodes else tuple(status.active_on(vm.resource)),
    )


def migration(status: ClusterStatus, rid: str) -> Migration | None:
    """A live migration of `rid` in flight, from crm_mon: a pending migrate_to/migrate_from
    (or the role Migrating), or a source whose last operation is a finished migrate_to (the
    stop that ends a migration has not run there yet)."""
    last: dict[str, Operation] = {}
    for op in status.operations:
        if op.resource != rid or op.task == "monitor":
            continue
        seen = last.get(op.node)
        if seen is None or (op.pending, op.call) > (seen.pending, seen.call):
            last[op.node] = op
    ok = {n: op for n, op in last.items() if op.pending or op.rc == 0}
    source = next((n for n, op in ok.items() if op.task == "migrate_to"), None)
    target = next(
        (n for n, op in ok.items() if op.task == "migrate_from" and (op.pending or source)),
        None,
    )
    role = [
        r for r in status.resource(rid) if (r.pending or "").lower() in ("migrating", "migrate_to")
    ]
    if source is None and role and role[0].nodes:
        source = role[0].nodes[0]
    if source is None and target is None:
        return None
    return Migration(source, target)


def node_states(status: ClusterStatus) -> list[NodeStatus]:
    return list(status.nodes)
