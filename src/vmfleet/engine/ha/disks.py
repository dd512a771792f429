"""The replication state of HA VMs' disks: each node's DRBD view (drbdsetup, else LINSTOR,
read through the cluster's node command) mapped to the VM's disks (`{vm}_{disk}`), with a
one-line summary per disk. Shared storage has nothing to replicate and says so."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from vmfleet.core.cluster import ClusterConfig, HaDisk
from vmfleet.drivers import drbd
from vmfleet.drivers.commands import CommandRunner
from vmfleet.drivers.drbd import DrbdResource, DrbdView
from vmfleet.drivers.pacemaker import ClusterStatus, ResourceStatus
from vmfleet.engine.ha.nodes import node_tools, per_node

SHARED = "shared"
SYNCING = ("SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT", "WFBitMapS", "WFBitMapT")


@dataclass(frozen=True, slots=True)
class DiskState:
    """One disk of an HA VM: where Pacemaker promotes its DRBD clone, and what DRBD says on
    each node (`replicas`), summed up in `state`: UpToDate, `syncing 42.5%`, `degraded (...)`,
    `shared` (a file on shared storage) or `unknown (why)`."""

    resource: str
    promoted_on: tuple[str, ...]
    replicas_on: tuple[str, ...]
    state: str = SHARED
    replicas: tuple[DrbdResource, ...] = ()


def read_views(
    runner: CommandRunner, config: ClusterConfig, status: ClusterStatus
) -> list[DrbdView]:
    """Each online node's DRBD view (none for shared storage). A cluster reached through one
    command (no `{node}` in it) is read once, from wherever that command runs."""
    if not config.drbd:
        return []
    online = [n.name for n in status.nodes if n.online] or list(config.spec.nodes)
    if per_node(config.spec):
        return [drbd.read(node_tools(runner, config.spec, n), node=n) for n in online]
    view = drbd.read(node_tools(runner, config.spec, online[0]), node=None)
    return [_named(view, config.spec.nodes)]


def _named(view: DrbdView, nodes: Sequence[str]) -> DrbdView:
    """drbdsetup does not name the node it runs on: it is the cluster node that is no peer."""
    peers = {p.node for r in view.resources for p in r.peers}
    left = [n for n in nodes if n not in peers]
    here = left[0] if len(left) == 1 else "local"
    resources = tuple(r if r.node else replace(r, node=here) for r in view.resources)
    return replace(view, node=view.node or here, resources=resources)


def disk_states(
    config: ClusterConfig,
    disks: Sequence[HaDisk],
    status: ClusterStatus,
    views: Sequence[DrbdView],
) -> tuple[DiskState, ...]:
    """The state of each disk from crm_mon (its DRBD clone) and the nodes' DRBD views."""
    if not config.drbd:
        return tuple(DiskState(d.resource, (), (), SHARED) for d in disks)
    out = []
    for disk in disks:
        members = status.resource(disk.drbd_primitive)
        replicas = tuple(r for view in views for r in view.resources if r.name == disk.resource)
        out.append(
            DiskState(
                resource=disk.resource,
                promoted_on=_nodes(members, promoted=True),
                replicas_on=_nodes(members, promoted=False),
                state=summary(replicas, views),
                replicas=replicas,
            )
        )
    return tuple(out)


def _nodes(members: list[ResourceStatus], *, promoted: bool) -> tuple[str, ...]:
    return tuple(
        n for r in members if r.active and (r.role == "Promoted" or not promoted) for n in r.nodes
    )


def summary(replicas: Sequence[DrbdResource], views: Sequence[DrbdView]) -> str:
    """One line for a disk: unknown (why), absent, syncing N%, degraded (what), UpToDate."""
    if not replicas:
        reasons = sorted({v.reason for v in views if v.source is None and v.reason})
        if reasons or not views:
            return f"unknown ({'; '.join(reasons) or 'no node answered'})"
        return "absent (no node has this DRBD resource)"
    syncing = [p for r in replicas for p in r.peers if p.replication in SYNCING] + [
        r for r in replicas if r.disk == "Inconsistent"
    ]
    if syncing:
        done = [p.in_sync for r in replicas for p in r.peers if p.replication in SYNCING]
        known = [d for d in done if d is not None]
        return f"syncing {min(known):.1f}%" if known else "syncing"
    problems = [
        f"{r.node}: peer {p.node} {p.connection}"
        for r in replicas
        for p in r.peers
        if p.connection != "Connected"
    ] + [f"{r.node}: {r.disk}" for r in replicas if r.disk != "UpToDate"]
    if problems:
        return f"degraded ({', '.join(problems)})"
    return "UpToDate"
