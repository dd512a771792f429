"""The JSON API under /api/v1: fleet, VMs, hosts, groups, snapshots, events (also as a
server-sent event stream) and actions. Every read renders one fresh look at the hosts
(`Service.view`); actions run the CLI's engine functions under the fleet lock."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from vmfleet.engine.monitor import HostView
from vmfleet.errors import UsageError
from vmfleet.serve import models
from vmfleet.serve.service import ActionResult, Service
from vmfleet.spec.units import parse_duration
from vmfleet.state import events

STREAM_POLL = 0.5  # seconds between looks at the event table while streaming
STREAM_KEEPALIVE = 15.0


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


Svc = Annotated[Service, Depends(service)]


def router(*, read: object, act: object) -> APIRouter:
    """The API routes; `read` and `act` are the auth dependencies for reads and actions."""
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(read)])  # type: ignore[arg-type]
    acts = [Depends(act)]  # type: ignore[arg-type]

    @api.get("/fleet", response_model=models.FleetModel, tags=["fleet"])
    def fleet(svc: Svc) -> models.FleetModel:
        """The fleet at a glance: VM counts, hosts, each group's Ready."""
        return models.fleet(svc.view())

    @api.get("/vms", response_model=list[models.VmModel], tags=["vms"])
    def vms(svc: Svc) -> list[models.VmModel]:
        """Every VM of the spec (state `absent` until created), and orphans of the fleet."""
        return [models.vm(v) for v in svc.view().vms]

    @api.get("/vms/{name}", response_model=models.VmModel, tags=["vms"])
    def vm(name: str, svc: Svc) -> models.VmModel:
        for v in svc.view().vms:
            if v.name == name:
                return models.vm(v)
        raise LookupError(f"no VM {name!r} in fleet {svc.fleet}")

    @api.get("/hosts", response_model=list[HostView], tags=["hosts"])
    def hosts(svc: Svc) -> list[HostView]:
        """Each host: reachable, capacity, what running domains allocate."""
        return list(svc.view().hosts)

    @api.get("/groups", response_model=list[models.GroupModel], tags=["groups"])
    def groups(svc: Svc) -> list[models.GroupModel]:
        """The group tree (parents first) with seed-004-shaped conditions."""
        return [models.group(g) for g in svc.view().groups]

    @api.get("/groups/{name}", response_model=models.GroupModel, tags=["groups"])
    def group(name: str, svc: Svc) -> models.GroupModel:
        for g in svc.view().groups:
            if g.name == name:
                return models.group(g)
        raise LookupError(f"no group {name!r} in fleet {svc.fleet}")

    @api.get("/snapshots", response_model=list[models.SnapshotModel], tags=["snapshots"])
    def snapshot_list(
        svc: Svc, vm: Annotated[list[str] | None, Query()] = None, group: str | None = None
    ) -> list[models.SnapshotModel]:
        """Snapshots per VM as libvirt lists them (all VMs, some, or a group's)."""
        rows = svc.snapshot_list(vms=vm or [], group=group)
        return [models.SnapshotModel.model_validate(r) for r in rows]

    @api.get("/events", response_model=list[models.EventModel], tags=["events"])
    def event_list(
        svc: Svc,
        since: str | None = None,
        object: Annotated[list[str] | None, Query()] = None,
        after: int = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
    ) -> list[models.EventModel]:
        """Events oldest first; `since` is a duration (`1h`, `30m`), `object` a VM,
        `group/NAME` or `host/NAME`, `after` an event id."""
        found = events.query(
            svc.ctx.store,
            fleet=svc.fleet,
            after=after,
            since=_since(since),
            objects=object,
            limit=limit,
        )
        return [models.event(e) for e in found]

    @api.get("/events/stream", tags=["events"], response_class=StreamingResponse)
    def event_stream(svc: Svc, after: int | None = None) -> StreamingResponse:
        """Server-sent events: each new event as `event: event` with its JSON as data,
        from id `after` (default: only events from now on)."""
        return sse(svc, after=after, render=lambda e: json.dumps(models.event(e).model_dump()))

    @api.post(
        "/groups/{name}/power",
        response_model=models.ActionModel,
        dependencies=acts,
        tags=["actions"],
    )
    def power_group(name: str, body: models.GroupPowerRequest, svc: Svc) -> models.ActionModel:
        """`vmfleet power ACTION FILE GROUP`: on walks the boot tiers, off stops them in
        reverse, suspend/resume all at once. Waits until done."""
        return _action(svc.power_group(name, body.action))

    @api.post(
        "/vms/{name}/{verb}", response_model=models.ActionModel, dependencies=acts, tags=["actions"]
    )
    def power_vm(name: str, verb: str, svc: Svc) -> models.ActionModel:
        """`vmfleet start|stop|reboot FILE VM`."""
        return _action(svc.power_vm(name, verb))

    @api.post("/snapshots", response_model=models.ActionModel, dependencies=acts, tags=["actions"])
    def snapshot_create(body: models.SnapshotRequest, svc: Svc) -> models.ActionModel:
        """`vmfleet snapshot create`: the members at one moment, then retention."""
        results, window = svc.snapshot(body.name, vms=body.vms, group=body.group, all_vms=body.all)
        return _action(results, window)

    return api


def _action(results: list[ActionResult], window: float | None = None) -> models.ActionModel:
    return models.ActionModel(
        ok=all(r.ok for r in results),
        results=[models.ActionResultModel(vm=r.vm, ok=r.ok, detail=r.detail) for r in results],
        pause_window_seconds=window,
    )


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return time.time() - parse_duration(text)
    except ValueError as error:
        raise UsageError(f"since: {error}") from None


def sse(
    svc: Service, *, after: int | None, render: Callable[[events.Event], str]
) -> StreamingResponse:
    """A server-sent event stream of new events; `render` turns one into the data lines."""
    if after is None:
        newest = svc.ctx.store.event_rows(limit=1)
        after = newest[0][0] if newest else 0
    start = after

    async def stream() -> AsyncIterator[str]:
        last, quiet = start, 0.0
        yield ": connected\n\n"
        while True:
            found = events.query(svc.ctx.store, fleet=svc.fleet, after=last, limit=500)
            for e in found:
                last = e.id
                lines = "".join(f"data: {line}\n" for line in render(e).splitlines())
                yield f"id: {e.id}\nevent: event\n{lines}\n"
            quiet = 0.0 if found else quiet + STREAM_POLL
            if quiet >= STREAM_KEEPALIVE:
                quiet = 0.0
                yield ": keepalive\n\n"
            await asyncio.sleep(STREAM_POLL)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
