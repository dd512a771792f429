"""`vmfleet migrate|drain|uncordon|rebalance|evacuate`: moving VMs between hosts."""

from __future__ import annotations

from typing import Annotated

import typer

from vmfleet import engine
from vmfleet.cli.common import FleetFile, Output, StateOpt, WaitOpt, app, fleet_context
from vmfleet.cli.output import OutputFormat, console, emit, err_console
from vmfleet.cli.progress import VmProgress
from vmfleet.core.moves import MovePlan
from vmfleet.engine import evacuate as engine_evacuate
from vmfleet.engine import migrate as engine_migrate
from vmfleet.engine import moves as engine_moves
from vmfleet.engine.context import FleetContext

HostArg = Annotated[str, typer.Argument(help="A host of the fleet.", show_default=False)]
ParallelOpt = Annotated[int, typer.Option("--parallel", "-j", min=1, help="Moves at a time.")]

_REPORT_COLUMNS = [
    ("vm", "VM"),
    ("source", "From"),
    ("target", "To"),
    ("mode", "Mode"),
    ("seconds", "Seconds"),
    ("downtime_ms", "Downtime ms"),
    ("detail", "Detail"),
]


def _recover(ctx: FleetContext) -> None:
    for item in engine.recover(ctx):
        err_console.print(f"recovered: {item} (left by an interrupted run)", highlight=False)


def _report_row(r: engine_migrate.Report) -> dict[str, object]:
    return {
        "vm": r.vm,
        "source": r.source,
        "target": r.target,
        "mode": r.mode,
        "seconds": round(r.seconds, 2),
        "downtime_ms": None if r.downtime_ms is None else round(r.downtime_ms, 1),
        "detail": r.fallback or "",
    }


@app.command()
def migrate(
    file: FleetFile,
    vm: Annotated[str, typer.Argument(help="The VM to move.", show_default=False)],
    to: Annotated[
        str | None, typer.Option("--to", help="Destination host (default: the scheduler's).")
    ] = None,
    offline: Annotated[
        bool, typer.Option(help="Stop it, copy its disks, start it there (the guest reboots).")
    ] = False,
    bandwidth: Annotated[
        int | None, typer.Option(min=1, help="Migration bandwidth limit, MiB/s.")
    ] = None,
    max_downtime: Annotated[
        int | None, typer.Option("--max-downtime", min=1, help="Longest pause allowed, ms.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="Live: seconds before the move is cancelled (the VM stays put). Offline: "
            "seconds the guest has to shut down before it is powered off (default 60).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Move to --to even when it breaks a required placement rule.")
    ] = False,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
) -> None:
    """Move a running VM to another host while it runs (live), or stopped with --offline.

    Only the VM's own disk layers travel: the base image is uploaded to the destination and
    the overlay recreated over it. The copy on the source is removed once the destination
    runs; an interrupted move is finished or rolled back by the next command.
    """
    options = engine_migrate.Options(
        to=to,
        offline=offline,
        bandwidth=bandwidth,
        max_downtime=max_downtime,
        timeout=timeout,
        force=force,
    )
    with fleet_context(file, state, lock=True, what=f"migrate {vm}", wait=wait) as ctx:
        _recover(ctx)
        with VmProgress(f"migrate {vm}", [vm]) as progress:
            report = engine_migrate.migrate(ctx, vm, options, progress)
    if report.fallback:
        err_console.print(f"{vm}: {report.fallback}", highlight=False)
    emit([_report_row(report)], fmt=output, columns=_REPORT_COLUMNS, data=_report_row(report))


def _plan_rows(plan: MovePlan) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [
        {"vm": m.vm, "source": m.source, "target": m.target, "detail": "move"} for m in plan.moves
    ]
    rows += [
        {"vm": vm, "source": "", "target": "", "detail": "stays: " + "; ".join(reasons)}
        for vm, reasons in plan.stuck.items()
    ]
    return rows


def _plan_data(plan: MovePlan, run: engine_moves.MoveRun | None) -> dict[str, object]:
    return {
        "moves": [{"vm": m.vm, "from": m.source, "to": m.target} for m in plan.moves],
        "stuck": {vm: list(r) for vm, r in plan.stuck.items()},
        "load_before": {h: round(v, 4) for h, v in plan.before.items()},
        "load_after": {h: round(v, 4) for h, v in plan.after.items()},
        "done": [] if run is None else [_report_row(r) for r in run.done],
        "failed": {} if run is None else run.failed,
    }


def _show(
    plan: MovePlan, run: engine_moves.MoveRun | None, *, title: str, fmt: OutputFormat
) -> None:
    if fmt is not OutputFormat.table:
        emit([], fmt=fmt, columns=[], data=_plan_data(plan, run))
        return
    emit(
        _plan_rows(plan),
        fmt=fmt,
        columns=[("vm", "VM"), ("source", "From"), ("target", "To"), ("detail", "Detail")],
        title=title,
    )
    loads = [
        {"host": h, "before": f"{plan.before[h]:.0%}", "after": f"{plan.after.get(h, 0.0):.0%}"}
        for h in plan.before
    ]
    emit(
        loads,
        fmt=fmt,
        columns=[("host", "Host"), ("before", "Load before"), ("after", "Load after")],
    )
    if run is not None:
        emit([_report_row(r) for r in run.done], fmt=fmt, columns=_REPORT_COLUMNS, title="moved")
        for vm, error in run.failed.items():
            err_console.print(f"{vm}: move failed: {error}", highlight=False)


def _exit_code(plan: MovePlan, run: engine_moves.MoveRun | None) -> None:
    if plan.stuck or (run is not None and run.failed):
        raise typer.Exit(1)


@app.command()
def drain(
    file: FleetFile,
    host: HostArg,
    parallel: ParallelOpt = 1,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
) -> None:
    """Cordon a host (no new VMs go there until `uncordon`) and move every VM of the fleet
    off it live, through the placement rules, N at a time. VMs that cannot move stay and
    are listed with the reasons (exit 1)."""
    with fleet_context(file, state, lock=True, what=f"drain {host}", wait=wait) as ctx:
        _recover(ctx)
        plan = engine_moves.drain_plan(ctx, host)
        with VmProgress(f"drain {host}", [m.vm for m in plan.moves]) as progress:
            run = engine_moves.execute(ctx, plan, progress, parallel=parallel)
    _show(plan, run, title=f"drain {host}", fmt=output)
    _exit_code(plan, run)


@app.command()
def uncordon(file: FleetFile, host: HostArg, state: StateOpt = None) -> None:
    """Let placement use a drained (or evacuated) host again."""
    with fleet_context(file, state, lock=True, what=f"uncordon {host}") as ctx:
        changed = engine_moves.uncordon(ctx, host)
    console.print(
        f"{host} is schedulable again" if changed else f"{host} was not cordoned", highlight=False
    )


@app.command()
def rebalance(
    file: FleetFile,
    apply: Annotated[
        bool, typer.Option("--apply", help="Make the moves (default: show them).")
    ] = False,
    max_moves: Annotated[
        int, typer.Option("--max-moves", min=0, help="At most this many moves.")
    ] = 10,
    parallel: ParallelOpt = 1,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
) -> None:
    """Propose moves that lower the highest host load and repair broken preferences (fewest
    moves first), with the load of every host before and after; --apply makes them live."""
    with fleet_context(file, state, lock=apply, what="rebalance", wait=wait) as ctx:
        if apply:
            _recover(ctx)
        plan = engine_moves.rebalance_plan(ctx, max_moves=max_moves)
        run = None
        if apply:
            with VmProgress("rebalance", [m.vm for m in plan.moves]) as progress:
                run = engine_moves.execute(ctx, plan, progress, parallel=parallel)
    _show(
        plan, run, title="rebalance" + ("" if apply else " (proposed; --apply moves)"), fmt=output
    )
    _exit_code(plan, run)


@app.command()
def evacuate(
    file: FleetFile,
    host: HostArg,
    parallel: ParallelOpt = 4,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
) -> None:
    """Recreate elsewhere, from their images and cloud-init, the VMs of a host that is down.

    Their local disk contents are lost (only shared storage keeps them). The host is
    cordoned; when it answers again, the next `up` removes the stale copies.
    """
    with fleet_context(file, state, lock=True, what=f"evacuate {host}", wait=wait) as ctx:
        _recover(ctx)
        with VmProgress(f"evacuate {host}", []) as progress:
            result = engine_evacuate.evacuate(ctx, host, progress, workers=parallel)
    rows: list[dict[str, object]] = [
        {"vm": vm, "target": target, "detail": "recreated; local disk contents lost"}
        for vm, target in sorted(result.moved.items())
    ]
    rows += [
        {"vm": vm, "target": "", "detail": "stays: " + "; ".join(r)}
        for vm, r in result.stuck.items()
    ]
    rows += [{"vm": vm, "target": "", "detail": f"failed: {e}"} for vm, e in result.failed.items()]
    data = {
        "host": host,
        "recreated": result.moved,
        "stuck": {vm: list(r) for vm, r in result.stuck.items()},
        "failed": result.failed,
    }
    emit(
        rows,
        fmt=output,
        columns=[("vm", "VM"), ("target", "New host"), ("detail", "Detail")],
        title=f"evacuate {host}",
        data=data,
    )
    if output is OutputFormat.table:
        err_console.print(
            f"{host} is cordoned; when it is back, `vmfleet up` removes its stale copies.",
            highlight=False,
        )
    if result.stuck or result.failed:
        raise typer.Exit(1)
