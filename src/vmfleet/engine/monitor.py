"""One look at the whole fleet for `serve`: every host's bulk statistics, capacity and
reachability, every VM's counters and every group's conditions, gathered together.

`gather` makes one bulk statistics call per host (in parallel), reads each host's
capacity once per `Monitor` (it does not change while serve runs), and computes the group
conditions with the same pure function `status` uses (`core.groups.status`). Metrics, the
REST API and the dashboard all render from the same `FleetView`, so they never disagree.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from vmfleet.core import groups as core
from vmfleet.core.expand import Instance
from vmfleet.drivers.libvirt import DomainState, DomainStats, HostCapabilities
from vmfleet.engine.context import FleetContext, default_uri
from vmfleet.engine.groups import records
from vmfleet.errors import FleetError
from vmfleet.state import events

ABSENT = "absent"  # a VM of the spec that no host has (not created yet)
UNKNOWN = "unknown"  # a VM no reachable host has while some host does not answer
_ACTIVE = (DomainState.RUNNING, DomainState.PAUSED, DomainState.BLOCKED)


@dataclass(frozen=True, slots=True)
class HostView:
    """One host: reachable or why not, capacity, and what running domains allocate (all
    domains, the fleet's and others')."""

    name: str
    uri: str
    reachable: bool
    error: str | None
    cpus: int | None
    memory_bytes: int | None
    allocated_vcpus: int
    allocated_memory_bytes: int
    fleet_vms: int


@dataclass(frozen=True, slots=True)
class VmView:
    """One VM of the fleet: what the spec wants and what its host reports (`stats` is None
    for a VM no reachable host has)."""

    name: str
    template: str
    host: str | None
    state: str
    groups: tuple[str, ...]
    ips: tuple[str, ...]
    stats: DomainStats | None
    ready_seconds: float | None = None  # start to ready in its last group power-on


@dataclass(frozen=True, slots=True)
class FleetView:
    fleet: str
    at: float
    seconds: float
    hosts: tuple[HostView, ...]
    vms: tuple[VmView, ...]
    groups: tuple[core.GroupStatus, ...]


class Monitor:
    """Gathers `FleetView`s for one fleet context; keeps each host's capacity."""

    def __init__(self, ctx: FleetContext) -> None:
        self.ctx = ctx
        self._capacity: dict[str, HostCapabilities] = {}
        self._lock = threading.Lock()

    def gather(self) -> FleetView:
        """Ask every host at once; an unreachable host is reported, never fatal."""
        started = time.monotonic()
        specs = self.ctx.host_specs()
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(specs)))) as pool:
            answers = list(pool.map(self._host, specs))
        hosts = tuple(view for view, _stats in answers)
        seen: dict[str, tuple[str, DomainStats]] = {}
        for view, stats in answers:
            for s in stats:
                if s.owner is not None and s.owner.fleet == self.ctx.fleet:
                    seen.setdefault(s.name, (view.name, s))
        instances = self.ctx.instances()
        missing = UNKNOWN if any(not h.reachable for h in hosts) else ABSENT
        ready = events.ready_seconds(self.ctx.store)
        vms = tuple(
            replace(_vm(i, seen.get(i.name), missing), ready_seconds=ready.get(i.name))
            for i in instances
        )
        known = {i.name for i in instances}
        orphans = tuple(
            VmView(name, "", host, str(s.state), (), (), s)
            for name, (host, s) in sorted(seen.items())
            if name not in known
        )
        placed = {name: core.Placed(host, str(s.state)) for name, (host, s) in seen.items()}
        groups = tuple(core.status(self.ctx.loaded.spec, instances, placed, records(self.ctx)))
        return FleetView(
            fleet=self.ctx.fleet,
            at=time.time(),
            seconds=time.monotonic() - started,
            hosts=hosts,
            vms=vms + orphans,
            groups=groups,
        )

    def _host(self, name: str) -> tuple[HostView, list[DomainStats]]:
        uri = self.ctx.host_specs()[name].uri or default_uri()
        try:
            host = self.ctx.host(name)
            stats = host.all_domain_stats()
            with self._lock:
                caps = self._capacity.get(name)
            if caps is None:
                caps = host.capabilities(probe_kvm=False)
                with self._lock:
                    self._capacity[name] = caps
        except FleetError as err:
            return HostView(name, uri, False, str(err), None, None, 0, 0, 0), []
        running = [s for s in stats if s.state in _ACTIVE]
        view = HostView(
            name=name,
            uri=uri,
            reachable=True,
            error=None,
            cpus=caps.cpus,
            memory_bytes=caps.memory_bytes,
            allocated_vcpus=sum(s.vcpus or 0 for s in running),
            allocated_memory_bytes=sum(s.max_memory_bytes or 0 for s in running),
            fleet_vms=sum(1 for s in stats if s.owner and s.owner.fleet == self.ctx.fleet),
        )
        return view, stats


def _vm(instance: Instance, seen: tuple[str, DomainStats] | None, missing: str) -> VmView:
    ips = tuple(n.ip for n in instance.nics if n.ip)
    if seen is None:
        return VmView(instance.name, instance.template, None, missing, instance.groups, ips, None)
    host, stats = seen
    return VmView(
        instance.name, instance.template, host, str(stats.state), instance.groups, ips, stats
    )
