"""`vmfleet events`: what vmfleet did and saw, oldest first, like `kubectl get events`."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

from vmfleet.cli.common import FleetFile, Output, StateOpt, app, fleet_context
from vmfleet.cli.output import OutputFormat, console, emit
from vmfleet.core import groups as core
from vmfleet.engine.context import FleetContext
from vmfleet.errors import UsageError
from vmfleet.spec.units import parse_duration
from vmfleet.state import events

FOLLOW_POLL = 0.5


def objects_of(ctx: FleetContext, names: list[str]) -> list[str] | None:
    """The event objects a command line names: a VM; a group (the group and its VMs); a host
    (`host/NAME`). None: every object."""
    if not names:
        return None
    spec, found = ctx.loaded.spec, []
    for name in names:
        if name in spec.groups:
            found += [f"group/{name}", *core.vms_of(spec, ctx.instances(), name)]
        elif name in ctx.host_specs() and name not in {i.name for i in ctx.instances()}:
            found.append(f"host/{name}")
        else:
            found.append(name)
    return list(dict.fromkeys(found))


def _row(e: events.Event) -> dict[str, object]:
    return {
        "time": events.iso_time(e.time),
        "object": e.subject or "",
        "reason": e.reason,
        "message": e.message,
    }


@app.command("events")
def show_events(
    file: FleetFile,
    names: Annotated[
        list[str] | None, typer.Argument(help="Only these VMs, groups or hosts.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only events this recent (30m, 1h, 2d).")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events (Ctrl-C ends).")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 500,
    state: StateOpt = None,
    output: Output = OutputFormat.table,
) -> None:
    """Events of the fleet oldest first: time, object (VM, group/NAME, host/NAME), reason,
    message. Kept: the newest 10,000, none older than 30 days."""
    try:
        after_time = None if since is None else time.time() - parse_duration(since)
    except ValueError as error:
        raise UsageError(f"--since: {error}") from None
    with fleet_context(file, state, lock=False, what="events") as ctx:
        events.prune(ctx.store)
        objects = objects_of(ctx, names or [])
        found = events.query(
            ctx.store, fleet=ctx.fleet, since=after_time, objects=objects, limit=limit
        )
        if not follow:
            emit(
                [_row(e) for e in found]
                if output is OutputFormat.table
                else [e.to_json() for e in found],
                fmt=output,
                title=f"events of fleet {ctx.fleet}",
                columns=[
                    ("time", "Time"),
                    ("object", "Object"),
                    ("reason", "Reason"),
                    ("message", "Message"),
                ],
            )
            return
        last = 0
        try:
            while True:
                for e in found:
                    last = e.id
                    _print(e, output)
                sys.stdout.flush()
                time.sleep(FOLLOW_POLL)
                found = events.query(ctx.store, fleet=ctx.fleet, after=last, objects=objects)
        except KeyboardInterrupt:
            return


def _print(e: events.Event, output: OutputFormat) -> None:
    if output is OutputFormat.table:
        r = _row(e)
        console.print(
            f"{r['time']}  {r['object']:<20} {r['reason']:<16} {r['message']}", highlight=False
        )
    else:
        sys.stdout.write(json.dumps(e.to_json()) + "\n")
