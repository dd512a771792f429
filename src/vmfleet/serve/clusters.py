"""Pacemaker and DRBD state as metrics, for fleets with HA clusters.

A look at a cluster is what `vmfleet cluster status` reads: crm_mon through the cluster's
node command, libvirt on each online node, and DRBD (drbdsetup, else LINSTOR) on each online
node. That is several commands per node, so a look serves further scrapes for
`CLUSTER_MAX_AGE` seconds. A cluster that cannot be read is `vmfleet_cluster_up 0` with its
other series left out; the other clusters are still reported.

Labels stay bounded: `cluster`, `node` (the cluster's nodes), `vm` (its HA VMs), `resource`
(their DRBD resources), `peer` (nodes), and `state`/`role` from fixed sets (a node is online,
standby, offline or unclean; an HA VM started, stopped, failed, missing, split, migrating,
starting or stopping; a disk UpToDate, syncing, degraded, absent, unknown or shared; a
DRBD role Primary, Secondary or Unknown; a DRBD disk state one of DRBD's disk states).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vmfleet.core.cluster import ClusterConfig
from vmfleet.engine import ha
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError

CLUSTER_MAX_AGE = 10.0  # seconds one look at the clusters serves further scrapes


@dataclass(frozen=True, slots=True)
class ClusterLook:
    """One cluster as last read; `report` None and `error` set when it could not be."""

    name: str
    report: ha.ClusterReport | None
    error: str | None = None


class ClusterReader:
    """Reads every cluster of the fleet, at most once per `max_age` seconds (concurrent
    scrapes wait for the look in progress)."""

    def __init__(self, ctx: FleetContext, *, max_age: float = CLUSTER_MAX_AGE) -> None:
        self._ctx = ctx
        self._max_age = max_age
        self._lock = threading.Lock()
        self._last: tuple[float, list[ClusterLook], float] | None = None

    @property
    def clustered(self) -> bool:
        return bool(self._ctx.loaded.spec.clusters)

    def looks(self) -> tuple[list[ClusterLook], float]:
        """The clusters, and the seconds the look took."""
        with self._lock:
            now = time.monotonic()
            if self._last is not None and self._last[0] >= now - self._max_age:
                return self._last[1], self._last[2]
            found = [self._one(config) for config in ha.configs(self._ctx)]
            took = time.monotonic() - now
            self._last = (now, found, took)
            return found, took

    def _one(self, config: ClusterConfig) -> ClusterLook:
        try:
            return ClusterLook(config.name, ha.cluster_status(self._ctx, config))
        except FleetError as error:
            return ClusterLook(config.name, None, str(error))


@dataclass(frozen=True, slots=True)
class Change:
    """One object's state as a look at the clusters found it, for serve's events: an event
    is written when `key` differs from the object's last one (see `Service._note`)."""

    obj: str
    reason: str
    key: str
    message: str


def cluster_changes(looks: Sequence[ClusterLook]) -> list[Change]:
    """Each cluster's reachability, each node's state and where each HA VM runs — so a
    failover, a fenced node or a VM the cluster moved shows in `vmfleet events`."""
    out = []
    for look in looks:
        if look.report is None:
            reason, text = "cluster-unreachable", f"cluster {look.name}: {look.error}"
            out.append(Change(f"cluster/{look.name}", reason, "", text))
            continue
        text = f"cluster {look.name} answers"
        out.append(Change(f"cluster/{look.name}", "cluster-reachable", "", text))
        for node in look.report.status.nodes:
            text = f"cluster {look.name}: node {node.name} is {node.state}"
            out.append(Change(f"node/{node.name}", "cluster-node", node.state, text))
        for vm in look.report.vms:
            where = vm.where or "no node"
            text = f"cluster {look.name}: {vm.vm} {vm.state} on {where}"
            out.append(Change(vm.vm, "ha-placement", f"{vm.state}@{where}", text))
    return out


class ClusterCollector(Collector):
    """The clusters' metric families; nothing at all for a fleet without clusters."""

    def __init__(
        self, read: Callable[[], tuple[Sequence[ClusterLook], float]], *, fleet: str
    ) -> None:
        self._read = read
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        looks, seconds = self._read()
        if not looks:
            return
        families = _Families()
        for look in looks:
            families.add(self._fleet, look)
        yield from families.all()
        took = GaugeMetricFamily(
            "vmfleet_cluster_gather_seconds",
            "Seconds the last look at the clusters took (crm_mon, libvirt and DRBD on the nodes).",
            labels=["fleet"],
        )
        took.add_metric([self._fleet], seconds)
        yield took


def _gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=["fleet", "cluster", *labels])


class _Families:
    def __init__(self) -> None:
        self.up = _gauge("vmfleet_cluster_up", "1 when crm_mon of the cluster answered.")
        self.quorum = _gauge("vmfleet_cluster_quorum", "1 when the cluster has quorum.")
        self.node = _gauge(
            "vmfleet_cluster_node_state",
            "1, labelled with the node's state (online, standby, offline, unclean).",
            "node",
            "state",
        )
        self.vm = _gauge(
            "vmfleet_ha_vm_state",
            "1, labelled with the HA VM's state as the cluster reports it.",
            "vm",
            "state",
        )
        self.on = _gauge(
            "vmfleet_ha_vm_node", "1 for each node the cluster runs the HA VM on.", "vm", "node"
        )
        self.fails = _gauge(
            "vmfleet_ha_vm_fail_count", "Pacemaker's fail count of the VM's resource.", "vm"
        )
        self.outside = _gauge(
            "vmfleet_ha_vm_outside_nodes",
            "Nodes where libvirt runs the VM but the cluster does not (should be 0).",
            "vm",
        )
        self.disk = _gauge(
            "vmfleet_ha_disk_state",
            "1, labelled with the disk's summary (UpToDate, syncing, degraded, absent, "
            "unknown, shared).",
            "vm",
            "resource",
            "state",
        )
        self.role = _gauge(
            "vmfleet_drbd_role",
            "1, labelled with the DRBD role of the resource on the node.",
            "resource",
            "node",
            "role",
        )
        self.local = _gauge(
            "vmfleet_drbd_disk_state",
            "1, labelled with the DRBD disk state of the resource on the node.",
            "resource",
            "node",
            "state",
        )
        self.connected = _gauge(
            "vmfleet_drbd_peer_connected",
            "1 when the node's connection to the peer for the resource is Connected.",
            "resource",
            "node",
            "peer",
        )
        self.in_sync = _gauge(
            "vmfleet_drbd_peer_in_sync_percent",
            "Percent of the resource the node has in sync with the peer (as DRBD reports).",
            "resource",
            "node",
            "peer",
        )

    def add(self, fleet: str, look: ClusterLook) -> None:
        at = [fleet, look.name]
        self.up.add_metric(at, 0.0 if look.report is None else 1.0)
        if look.report is None:
            return
        status = look.report.status
        self.quorum.add_metric(at, 1.0 if status.quorum else 0.0)
        for node in status.nodes:
            self.node.add_metric([*at, node.name, node.state], 1.0)
        for vm in look.report.vms:
            self.vm.add_metric([*at, vm.vm, vm.state], 1.0)
            for name in vm.nodes:
                self.on.add_metric([*at, vm.vm, name], 1.0)
            self.fails.add_metric([*at, vm.vm], float(vm.fail_count))
            self.outside.add_metric([*at, vm.vm], float(len(vm.outside)))
            for disk in vm.disks:
                state = disk.state.split(" ", 1)[0]
                self.disk.add_metric([*at, vm.vm, disk.resource, state], 1.0)
                for replica in disk.replicas:
                    where = [*at, replica.name, replica.node]
                    self.role.add_metric([*where, replica.role], 1.0)
                    self.local.add_metric([*where, replica.disk], 1.0)
                    for peer in replica.peers:
                        up = 1.0 if peer.connection == "Connected" else 0.0
                        self.connected.add_metric([*where, peer.node], up)
                        if peer.in_sync is not None:
                            self.in_sync.add_metric([*where, peer.node], peer.in_sync)

    def all(self) -> list[GaugeMetricFamily]:
        return [
            self.up,
            self.quorum,
            self.node,
            self.vm,
            self.on,
            self.fails,
            self.outside,
            self.disk,
            self.role,
            self.local,
            self.connected,
            self.in_sync,
        ]
