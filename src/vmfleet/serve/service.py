"""What `serve` runs besides HTTP: the fleet context, looks at the fleet, the watchers that
turn what libvirt and the hosts report into events, and the actions.

Actions call the same `Fleet` methods as the CLI commands (`vmfleet power`, `start`, `stop`,
`snapshot create`), which take the fleet lock the same way, so an API action and a CLI run
never interleave: the later one waits up to `lock_wait` seconds, then fails with LockedError.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from prometheus_client import CollectorRegistry

from vmfleet.api import Fleet
from vmfleet.drivers.libvirt import LibvirtHost, LifecycleEvent
from vmfleet.engine.context import FleetContext
from vmfleet.engine.monitor import FleetView, Monitor
from vmfleet.errors import FleetError, UsageError
from vmfleet.serve import metrics
from vmfleet.serve.clusters import ClusterCollector, ClusterReader, cluster_changes
from vmfleet.state import events
from vmfleet.state.store import DurationRow

GROUP_VERBS = ("on", "off", "suspend", "resume")
VM_VERBS = ("start", "stop", "reboot")
VIEW_MAX_AGE = 1.0  # seconds a look at the hosts serves further requests
WATCHED = ("started", "stopped", "crashed", "suspended", "resumed")
# states whose first sighting is no news (the rest are recorded on the first look too)
QUIET_FIRST = ("host-reachable", "cluster-reachable", "ha-placement", "cluster-node")


@dataclass(frozen=True, slots=True)
class ActionResult:
    """One VM's part in an action."""

    vm: str
    ok: bool
    detail: str


class ServedFleet(Fleet):
    """A `Fleet` whose engine context (host connections, state store) `serve` also reads."""

    def context(self) -> FleetContext:
        return self._context()


class Service:
    """One fleet served: shared by every request thread (the engine's calls are thread-safe;
    the fleet lock orders actions). Open the fleet with the `lock_wait` actions should have."""

    def __init__(self, fleet: ServedFleet) -> None:
        self.api = fleet
        self.ctx = fleet.context()
        self.monitor = Monitor(self.ctx)
        self.clusters = ClusterReader(self.ctx)
        self.registry: CollectorRegistry = metrics.registry(
            self.view,
            self._durations,
            fleet=self.ctx.fleet,
            clusters=(
                ClusterCollector(self.clusters.looks, fleet=self.ctx.fleet)
                if self.clusters.clustered
                else None
            ),
        )
        self._watches: dict[str, tuple[LibvirtHost, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, str] = {}
        self._view_lock = threading.Lock()  # one look at a time
        self._change_lock = threading.Lock()
        self._view: tuple[float, FleetView] | None = None
        self._generation = 0  # bumped by every change seen: a look from before is not reused

    @property
    def fleet(self) -> str:
        return self.ctx.fleet

    def view(self, *, max_age: float = VIEW_MAX_AGE) -> FleetView:
        """A look at the hosts that began at most `max_age` seconds before this call (or
        after it), and after the last change seen. Requests that come while a look runs
        wait for it instead of asking the hosts again (libvirt's bulk stats query every
        running QEMU: seconds on a busy host)."""
        asked = time.monotonic()
        with self._view_lock:
            with self._change_lock:
                generation, cached = self._generation, self._view
            if cached is not None and cached[0] >= asked - max_age:
                return cached[1]
            began = time.monotonic()
            view = self.monitor.gather()
            with self._change_lock:
                if generation == self._generation:
                    self._view = (began, view)
            return view

    def changed(self) -> None:
        """Something changed (a libvirt event, an action): the next request looks again.
        Quick: libvirt's event loop thread calls it."""
        with self._change_lock:
            self._generation += 1
            self._view = None

    def _durations(self, after: int, since: float | None, limit: int) -> list[DurationRow]:
        """Operation durations any process recorded (read at scrape by the histograms)."""
        return self.ctx.store.duration_rows(after=after, since=since, limit=limit)

    # --- watching ---------------------------------------------------------------------------

    def start(self, *, interval: float = 5.0) -> None:
        """Watch every reachable host's lifecycle events, and every `interval` seconds note
        hosts that stop or start answering and groups whose Ready condition changes. A host
        that answers again is watched again (its old watch died with its connection)."""
        self.check()
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="vmfleet-watch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for name in list(self._watches):
            self._unwatch(name)

    def _watch(self, name: str) -> None:
        self._unwatch(name)
        try:
            host = self.ctx.host(name)
            self._watches[name] = (host, host.watch_lifecycle(self._on_lifecycle))
        except FleetError as err:
            self._note(f"host/{name}", "host-unreachable", str(err))

    def _unwatch(self, name: str) -> None:
        host, handle = self._watches.pop(name, (None, 0))
        if host is not None:
            with contextlib.suppress(FleetError):
                host.unwatch(handle)

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with contextlib.suppress(FleetError):
                self.check()
            events.prune(self.ctx.store)

    def check(self) -> FleetView:
        """One look: record what changed since the last (host reachability, group Ready)."""
        view = self.view(max_age=0.0)
        for h in view.hosts:
            again = self._last.get(f"host/{h.name}") == "host-unreachable"
            if h.reachable and (again or h.name not in self._watches):
                self._watch(h.name)
            state = "host-reachable" if h.reachable else "host-unreachable"
            self._note(f"host/{h.name}", state, h.error or f"{h.name} answers ({h.uri})")
        for g in view.groups:
            ready = g.conditions[0]
            text = f"Ready={ready.status}" + (f": {ready.message}" if ready.message else "")
            self._note(f"group/{g.name}", "group-condition", text, key=text)
        if self.clusters.clustered:
            looks, _took = self.clusters.looks()
            for change in cluster_changes(looks):
                self._note(change.obj, change.reason, change.message, key=change.key)
        return view

    def _note(self, obj: str, reason: str, message: str, *, key: str = "") -> None:
        """Record an event when an object's last noted state (`reason`, and `key` when the
        reason alone does not tell states apart) differs; not on every look. A first look
        is recorded only when it finds something wrong (a host or cluster that does not
        answer, a group's condition) — not a host answering or where the cluster runs a VM."""
        noted = f"{reason}:{key}"
        previous = self._last.get(obj)
        self._last[obj] = noted
        if previous == noted or (previous is None and reason in QUIET_FIRST):
            return
        events.record(self.ctx.store, reason=reason, obj=obj, message=message)

    def _on_lifecycle(self, event: LifecycleEvent) -> None:
        if event.owner is None or event.owner.fleet != self.fleet or event.event not in WATCHED:
            return
        self.changed()
        why = f" ({event.detail})" if event.detail else ""
        events.record(
            self.ctx.store,
            reason=f"domain-{event.event}",
            obj=event.vm,
            message=f"libvirt: {event.vm} {event.event}{why} on {event.host}",
        )

    # --- actions ----------------------------------------------------------------------------

    def power_group(self, group: str, verb: str) -> list[ActionResult]:
        """`vmfleet power VERB FILE GROUP`: the group's boot walk or reverse power-off."""
        if verb not in GROUP_VERBS:
            raise UsageError(f"unknown power verb {verb!r} (one of {', '.join(GROUP_VERBS)})")
        if group not in self.ctx.loaded.spec.groups:
            raise UsageError(f"no group {group!r} in fleet {self.fleet}")
        self._asked(f"group/{group}", f"power {verb}")
        try:
            outcomes = self.api.power(group, verb)
        finally:
            self.changed()
        return [ActionResult(o.vm, o.ok, o.detail) for o in outcomes]

    def power_vm(self, vm: str, verb: str) -> list[ActionResult]:
        """`vmfleet start|stop|reboot FILE VM`."""
        if verb not in VM_VERBS:
            raise UsageError(f"unknown power verb {verb!r} (one of {', '.join(VM_VERBS)})")
        if vm not in {i.name for i in self.ctx.instances()}:
            # Fleet targets also name templates and groups: this route acts on one VM only
            raise UsageError(f"no VM {vm!r} in fleet {self.fleet}")
        self._asked(vm, verb)
        try:
            done = getattr(self.api, verb)([vm])
        finally:
            self.changed()
        return [ActionResult(o.vm, o.ok, o.detail) for o in done.outcomes]

    def snapshot(
        self, name: str, *, vms: Sequence[str] = (), group: str | None = None, all_vms: bool = False
    ) -> tuple[list[ActionResult], float | None]:
        """`vmfleet snapshot create`: members at one moment; returns the pause window."""
        self._asked(f"group/{group}" if group else None, f"snapshot {name}")
        try:
            report = self.api.snapshot_create(name, vms, group=group, all_vms=all_vms)
        finally:
            self.changed()
        return [ActionResult(r.vm, r.ok, r.detail) for r in report.results], report.pause_window

    def snapshot_list(
        self, *, vms: Sequence[str] = (), group: str | None = None
    ) -> list[dict[str, object]]:
        return [asdict(row) for row in self.api.snapshot_list(vms, group=group)]

    def _asked(self, obj: str | None, what: str) -> None:
        events.record(self.ctx.store, reason="action", obj=obj, message=f"API: {what}")
