"""What the cluster says about each HA VM (the cluster's view, never libvirt's alone)."""

from __future__ import annotations

from dataclasses import dataclass

from vmfleet.core.cluster import ClusterConfig, HaVm
from vmfleet.drivers.pacemaker import ClusterStatus, NodeStatus

MOVE_PREFIX = "cli-prefer-"


@dataclass(frozen=True, slots=True)
class DiskState:
    resource: str
    promoted_on: tuple[str, ...]
    replicas_on: tuple[str, ...]


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
) -> HaVmState:
    """The state of one VM from crm_mon (and, when given, what each node's libvirt runs)."""
    found = status.resource(vm.resource)
    nodes = tuple(status.running_on(vm.resource))
    if not found:
        state = "missing"
    elif any(r.failed for r in found):
        state = "failed"
    elif len(nodes) > 1:
        state = "split"
    elif any(r.pending for r in found):
        state = next(str(r.pending).lower() for r in found if r.pending)  # migrating, starting…
    else:
        state = "started" if nodes else "stopped"
    disks = []
    if config.drbd:
        for disk in vm.disks:
            members = status.resource(disk.drbd_primitive)
            disks.append(
                DiskState(
                    resource=disk.resource,
                    promoted_on=tuple(
                        n for r in members if r.active and r.role == "Promoted" for n in r.nodes
                    ),
                    replicas_on=tuple(n for r in members if r.active for n in r.nodes),
                )
            )
    outside = tuple(
        node
        for node, names in (libvirt_running or {}).items()
        if vm.name in names and node not in nodes
    )
    return HaVmState(
        vm=vm.name,
        cluster=config.name,
        nodes=nodes,
        state=state,
        target_role=found[0].target_role if found else None,
        fail_count=sum(c for _, rid, c in status.fail_counts if rid == vm.resource),
        disks=tuple(disks),
        outside=outside,
    )


def node_states(status: ClusterStatus) -> list[NodeStatus]:
    return list(status.nodes)
