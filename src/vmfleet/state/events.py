"""The event log: every change vmfleet makes or observes, like Kubernetes events.

An event has a time, the fleet, the object it is about (a VM's name, `group/NAME`,
`host/NAME`), a reason (the kind of change) and a message. The engine writes them into the
store's `events` table as it works; `vmfleet serve` adds what libvirt reports behind
vmfleet's back (a domain started, stopped or crashed), hosts that stop or start answering and
group conditions that change. `vmfleet events` and the API read them from here.

Retention (see `Store.prune_events`): the newest EVENTS_KEEP events, none older than
EVENTS_MAX_AGE, applied every few hundred writes and by `vmfleet events`/`serve`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from vmfleet.state.store import EVENTS_KEEP, EVENTS_MAX_AGE, Store

# Reasons vmfleet writes (the store's `kind` column), and what they mean.
REASONS = {
    "created": "a VM was created on a host",
    "removed": "a VM was removed from its host",
    "power": "vmfleet changed a VM's power state (group power, start, stop, reboot)",
    "group-power": "vmfleet set a group's power state (pending, done, failed)",
    "group-condition": "a group's Ready condition changed",
    "domain-started": "libvirt reports the domain started",
    "domain-stopped": "libvirt reports the domain stopped",
    "domain-crashed": "libvirt reports the domain crashed",
    "domain-suspended": "libvirt reports the domain paused",
    "domain-resumed": "libvirt reports the domain running again",
    "host-unreachable": "a host stopped answering",
    "host-reachable": "a host answers again",
    "snapshot": "a VM's snapshot was created, reverted to or deleted",
    "action": "an action was asked for through the API",
}


@dataclass(frozen=True, slots=True)
class Event:
    """One event as `vmfleet events -o json` and the API show it."""

    id: int
    time: float
    fleet: str
    subject: str | None  # the object: a VM, group/NAME or host/NAME
    reason: str
    message: str

    @property
    def iso_time(self) -> str:
        return iso_time(self.time)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["time"] = iso_time(self.time)
        data["object"] = data.pop("subject")
        return data


def iso_time(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def message_of(kind: str, message: str) -> str:
    """The readable message of a stored event (group-power records are JSON)."""
    if kind == "group-power":
        try:
            data = json.loads(message)
        except ValueError:
            return message
        words = " ".join(str(data[k]) for k in ("state", "status") if data.get(k))
        detail = f": {data['detail']}" if data.get("detail") else ""
        return f"power state {words}{detail}"
    return message


def query(
    store: Store,
    *,
    fleet: str,
    after: int = 0,
    since: float | None = None,
    objects: list[str] | None = None,
    limit: int = 1000,
) -> list[Event]:
    """Events oldest first: after id `after`, since a time, about some objects, the newest
    `limit`. Objects name VMs, `group/NAME` or `host/NAME`."""
    rows = store.event_rows(after=after, since=since, objects=objects, limit=limit)
    return [Event(i, at, fleet, obj, kind, message_of(kind, msg)) for i, at, obj, kind, msg in rows]


def ready_seconds(store: Store, *, limit: int = 5000) -> dict[str, float]:
    """Each VM's readiness latency: seconds from `started` to `ready` in the last group
    power-on that brought it up (from the `power` events the group walk writes)."""
    rows = store.event_rows(kinds=["power"], limit=limit)
    return latencies([(at, vm, message) for _id, at, vm, _kind, message in rows if vm])


def latencies(transitions: list[tuple[float, str, str]]) -> dict[str, float]:
    """Pure: (time, vm, message) oldest first → vm → seconds from its last `started…` to
    the `ready…` that followed it."""
    started: dict[str, float] = {}
    found: dict[str, float] = {}
    for at, vm, message in transitions:
        if message.startswith("started"):
            started[vm] = at
        elif message.startswith("ready") and vm in started:
            found[vm] = at - started.pop(vm)
    return found


def record(store: Store, *, reason: str, obj: str | None, message: str) -> None:
    """Write one event (the store prunes as it goes)."""
    store.event(kind=reason, vm=obj, message=message)


def prune(store: Store, *, keep: int = EVENTS_KEEP, max_age: float = EVENTS_MAX_AGE) -> int:
    """Apply the retention now; returns how many events went."""
    return store.prune_events(keep=keep, older_than=time.time() - max_age)
