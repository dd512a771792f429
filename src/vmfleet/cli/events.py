"""`vmfleet events`: what vmfleet did and saw, oldest first, like `kubectl get events`."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from vmfleet.cli.common import FleetFile, Output, StateOpt, app, open_fleet
from vmfleet.cli.output import OutputFormat, console, emit
from vmfleet.errors import UsageError
from vmfleet.spec.units import parse_duration

if TYPE_CHECKING:
    from vmfleet.api.types import LogEvent

FOLLOW_POLL = 0.5


def _row(e: LogEvent) -> dict[str, object]:
    return {"time": e.iso_time, "object": e.subject or "", "reason": e.reason, "message": e.message}


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
        age = None if since is None else parse_duration(since)
    except ValueError as error:
        raise UsageError(f"--since: {error}") from None
    with open_fleet(file, state, run_log=False) as fleet:
        found = fleet.events(names or [], since=age, limit=limit)
        if not follow:
            rows = [_row(e) if output is OutputFormat.table else e.to_json() for e in found]
            emit(
                rows,
                fmt=output,
                title=f"events of fleet {fleet.name}",
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
                found = fleet.events(names or [], after=last)
        except KeyboardInterrupt:
            return


def _print(e: LogEvent, output: OutputFormat) -> None:
    if output is OutputFormat.table:
        r = _row(e)
        console.print(
            f"{r['time']}  {r['object']:<20} {r['reason']:<16} {r['message']}", highlight=False
        )
    else:
        sys.stdout.write(json.dumps(e.to_json()) + "\n")
