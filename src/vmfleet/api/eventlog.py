"""The `Fleet` method for the event log: what vmfleet did and saw (`vmfleet events`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vmfleet.api.base import FleetBase
from vmfleet.core import groups as core_groups

if TYPE_CHECKING:
    from vmfleet.state.events import Event


class EventLog(FleetBase):
    """Reading the fleet's events; see `Fleet`."""

    def events(
        self,
        names: Sequence[str] = (),
        *,
        since: float | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> tuple[Event, ...]:
        """Events oldest first: about `names` (a VM; a group, with its VMs; a host), at most
        `since` seconds old, after event id `after`, the newest `limit`. Applies the
        retention first."""
        from vmfleet.state import events

        ctx = self._context()
        if after == 0:
            events.prune(ctx.store)
        return tuple(
            events.query(
                ctx.store,
                fleet=self.name,
                after=after,
                since=None if since is None else time.time() - since,
                objects=self._objects(names),
                limit=limit,
            )
        )

    def _objects(self, names: Sequence[str]) -> list[str] | None:
        """The event objects names stand for. None: every object."""
        if not names:
            return None
        ctx = self._context()
        vms = {i.name for i in ctx.instances()}
        found: list[str] = []
        for name in names:
            if name in self.spec.groups:
                found += [f"group/{name}", *core_groups.vms_of(self.spec, ctx.instances(), name)]
            elif name in ctx.host_specs() and name not in vms:
                found.append(f"host/{name}")
            else:
                found.append(name)
        return list(dict.fromkeys(found))
