"""Lifecycle events: libvirt tells us when a domain starts, stops or crashes, whoever did it.

`watch_lifecycle` registers a callback through libvirt's event API (no polling). Events need
libvirt's event loop running *before* the connection is opened, so a watch starts the loop
and opens a connection of its own for the events (the host's shared connection may predate
the loop; closing it would fail other threads' calls). Callbacks run on the loop's thread:
they must be quick and must not block (the serve layer only writes a row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt

from vmfleet.drivers.libvirt import connection
from vmfleet.drivers.libvirt.stats import _Stats
from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.errors import HypervisorError

# virDomainEventType, named as virsh event names them
EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}
# details of STOPPED that say why (virDomainEventStoppedDetailType)
STOPPED_DETAILS = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "shut down",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED: "migrated",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED: "saved",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "failed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT: "from snapshot",
}


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """One domain lifecycle change on a host. `owner` is None for a domain that is not
    vmfleet's, or one already gone whose owner was never read."""

    host: str
    vm: str
    uuid: str
    event: str
    detail: str
    owner: OwnerMetadata | None


class _Watch(_Stats):
    """Domain lifecycle events through libvirt's event API."""

    def watch_lifecycle(self, callback: Callable[[LifecycleEvent], None]) -> int:
        """Call `callback` for every lifecycle event of any domain on this host; returns the
        handle for `unwatch`. Starts libvirt's event loop when it is not running."""
        connection.start_event_loop()
        conn = connection._open_with_timeout(
            self.uri, host=self.name, timeout=self._connect_timeout
        )

        def on_event(_conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
            name, uuid = str(dom.name()), str(dom.UUIDString())
            owner = self._owner_cache_get(uuid)
            if owner is None and event != libvirt.VIR_DOMAIN_EVENT_UNDEFINED:
                try:
                    owner = self._owner_of(dom)
                except HypervisorError:
                    owner = None  # gone by now: no owner to tell
            kind = EVENTS.get(event, f"event-{event}")
            why = (
                STOPPED_DETAILS.get(detail, "") if event == libvirt.VIR_DOMAIN_EVENT_STOPPED else ""
            )
            callback(LifecycleEvent(self.name, name, uuid, kind, why, owner))

        with self._call("watch domain events"):
            handle = int(
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_event, None
                )
            )
        with self._owner_lock:
            self.__dict__.setdefault("_watches", {})[handle] = conn
        return handle

    def unwatch(self, handle: int) -> None:
        """Stop a watch and close its connection (a dead one has nothing left to stop)."""
        with self._owner_lock:
            conn = self.__dict__.get("_watches", {}).pop(handle, None)
        if conn is None:
            return
        try:
            conn.domainEventDeregisterAny(handle)
            conn.close()
        except libvirt.libvirtError:
            self._discard(conn)

    def _owner_cache_get(self, uuid: str) -> OwnerMetadata | None:
        with self._owner_lock:
            cache: dict[str, OwnerMetadata | None] = self.__dict__.get("_owner_cache", {})
            return cache.get(uuid)
