"""`vmfleet farm run|status|clean`: the test farm of a fleet file's `farm:` section."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from vmfleet.cli.common import FleetFile, Output, StateOpt, WaitOpt, app, open_fleet
from vmfleet.cli.output import OutputFormat, console, emit, err_console
from vmfleet.errors import FleetError

if TYPE_CHECKING:
    from vmfleet.api.farm import FarmRun

farm_app = typer.Typer(
    help="Test farm: run the matrix's phases, show its cells, remove VMs or stale snapshots.",
    no_args_is_help=True,
)
app.add_typer(farm_app, name="farm")

_CELL_COLUMNS = [
    ("cell", "Cell"),
    ("vm", "VM"),
    ("host", "Host"),
    ("outcome", "Outcome"),
    ("seconds", "Seconds"),
    ("phases", "Phases"),
]


def run_rows(run: FarmRun) -> list[dict[str, object]]:
    """One row per cell: outcome, time, and each phase's status and seconds."""
    return [
        {
            "cell": c.cell.label,
            "vm": c.cell.vm,
            "host": c.host,
            "outcome": "passed" if c.ok else f"failed in {c.failed_phase}",
            "seconds": round(c.seconds, 2),
            "phases": " ".join(
                f"{p.phase.replace(' ', '-')}:{p.status}"
                + (f"({p.seconds:.1f}s)" if p.status != "skipped" else "")
                for p in c.phases
            ),
            "phase_results": [
                {
                    "phase": p.phase,
                    "status": p.status,
                    "seconds": round(p.seconds, 3),
                    "detail": p.detail,
                    "log": str(p.log) if p.log else None,
                }
                for p in c.phases
            ],
        }
        for c in run.cells
    ]


@farm_app.command("run")
def run(
    file: FleetFile,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Only this cell, as platform/target (repeatable)."),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Cells at a time.")] = 4,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Write JUnit XML results here.")
    ] = None,
    keep_failed: Annotated[
        bool, typer.Option("--keep-failed", help="Leave a failed cell's VM as it is.")
    ] = False,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
) -> None:
    """Create the cells' VMs and run their phases; exit 1 when a cell failed."""

    def live(cell: object, phase: str, status: str) -> None:
        if output is OutputFormat.table:
            label = getattr(cell, "label", "")
            err_console.print(f"{escape(label)}: {phase} {status}", highlight=False)

    with open_fleet(file, state, wait=wait) as fleet:
        result = fleet.farm_run(
            only or (), jobs=jobs, keep_failed=keep_failed, junit_path=junit, on_cell=live
        )
    rows = run_rows(result)
    emit(
        rows,
        fmt=output,
        columns=_CELL_COLUMNS,
        title=f"farm {result.fleet}",
        data={
            "fleet": result.fleet,
            "ok": result.ok,
            "seconds": round(result.seconds, 3),
            "logs": str(result.logs),
            "junit": str(result.junit) if result.junit else None,
            "cells": rows,
        },
    )
    if output is OutputFormat.table:
        console.print(f"logs in {result.logs}" + (f"; JUnit in {junit}" if junit else ""))
    failed = [c.cell.label for c in result.cells if not c.ok]
    if failed:
        raise FleetError(f"{len(failed)} of {len(result.cells)} cells failed: {', '.join(failed)}")


@farm_app.command("status")
def status(file: FleetFile, state: StateOpt = None, output: Output = OutputFormat.table) -> None:
    """Each cell's VM, its host and state, and the farm snapshots it holds."""
    with open_fleet(file, state) as fleet:
        rows = [
            {
                "cell": s.cell.label,
                "vm": s.cell.vm,
                "host": s.host,
                "state": s.state,
                "snapshots": list(s.snapshots),
            }
            for s in fleet.farm_status()
        ]
    emit(
        rows,
        fmt=output,
        columns=[
            ("cell", "Cell"),
            ("vm", "VM"),
            ("host", "Host"),
            ("state", "State"),
            ("snapshots", "Snapshots"),
        ],
    )


@farm_app.command("clean")
def clean(
    file: FleetFile,
    stale: Annotated[
        bool,
        typer.Option("--stale", help="Only delete farm snapshots of other project revisions."),
    ] = False,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
) -> None:
    """Remove the farm's VMs and their snapshots (or, with --stale, only old snapshots)."""
    with open_fleet(file, state, wait=wait) as fleet:
        removed = fleet.farm_clean(stale=stale)
    emit([{"removed": r} for r in removed], fmt=output, columns=[("removed", "Removed")])
