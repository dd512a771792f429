"""`vmfleet migrate|drain|uncordon|rebalance|evacuate`: moving VMs between hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from vmfleet.cli.common import FleetFile, Output, StateOpt, WaitOpt, app, open_fleet
from vmfleet.cli.output import OutputFormat, console, emit, err_console
from vmfleet.errors import UsageError

if TYPE_CHECKING:
    from vmfleet.api import MoveReport, MoveResult

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


def _report_row(r: MoveReport) -> dict[str, object]:
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
    with open_fleet(file, state, wait=wait) as fleet:
        if vm in fleet.ha_vms():  # Pacemaker moves it (seed 001's vm_migrate)
            if to is None:
                raise UsageError(f"{vm} is managed by its cluster: name the node with --to")
            source = fleet.cluster_migrate(vm, to)
            console.print(f"{vm}: moved from {source} to {to} by its cluster", highlight=False)
            return
        report = fleet.migrate(
            vm,
            to=to,
            offline=offline,
            bandwidth=bandwidth,
            max_downtime=max_downtime,
            timeout=timeout,
            force=force,
        )
    if report.fallback:
        err_console.print(f"{vm}: {report.fallback}", highlight=False)
    emit([_report_row(report)], fmt=output, columns=_REPORT_COLUMNS, data=_report_row(report))


def _plan_rows(result: MoveResult) -> list[dict[str, object]]:
    plan = result.plan
    rows: list[dict[str, object]] = [
        {"vm": m.vm, "source": m.source, "target": m.target, "detail": "move"} for m in plan.moves
    ]
    rows += [
        {"vm": vm, "source": "", "target": "", "detail": "stays: " + "; ".join(reasons)}
        for vm, reasons in plan.stuck.items()
    ]
    return rows


def _plan_data(result: MoveResult) -> dict[str, object]:
    plan = result.plan
    return {
        "moves": [{"vm": m.vm, "from": m.source, "to": m.target} for m in plan.moves],
        "stuck": {vm: list(r) for vm, r in plan.stuck.items()},
        "load_before": {h: round(v, 4) for h, v in plan.before.items()},
        "load_after": {h: round(v, 4) for h, v in plan.after.items()},
        "applied": result.applied,
        "done": [_report_row(r) for r in result.done],
        "failed": dict(result.failed),
    }


def _show(result: MoveResult, *, title: str, fmt: OutputFormat) -> None:
    if fmt is not OutputFormat.table:
        emit([], fmt=fmt, columns=[], data=_plan_data(result))
    else:
        plan = result.plan
        columns = [("vm", "VM"), ("source", "From"), ("target", "To"), ("detail", "Detail")]
        if plan.moves or plan.stuck:
            emit(_plan_rows(result), fmt=fmt, columns=columns, title=title)
        else:
            console.print(f"{title}: nothing to move", highlight=False)
        loads = [
            {"host": h, "before": f"{v:.0%}", "after": f"{plan.after.get(h, 0.0):.0%}"}
            for h, v in plan.before.items()
        ]
        emit(
            loads,
            fmt=fmt,
            columns=[("host", "Host"), ("before", "Load before"), ("after", "Load after")],
        )
        if result.done:
            emit(
                [_report_row(r) for r in result.done],
                fmt=fmt,
                columns=_REPORT_COLUMNS,
                title="moved",
            )
        for vm, error in result.failed.items():
            err_console.print(f"{vm}: move failed: {error}", highlight=False)
    if result.plan.stuck or result.failed:
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
    with open_fleet(file, state, wait=wait) as fleet:
        result = fleet.drain(host, parallel=parallel)
    _show(result, title=f"drain {host}", fmt=output)


@app.command()
def uncordon(file: FleetFile, host: HostArg, state: StateOpt = None) -> None:
    """Let placement use a drained (or evacuated) host again."""
    with open_fleet(file, state) as fleet:
        changed = fleet.uncordon(host)
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
    with open_fleet(file, state, wait=wait) as fleet:
        result = fleet.rebalance(apply=apply, max_moves=max_moves, parallel=parallel)
    _show(result, title="rebalance" + ("" if apply else " (proposed; --apply moves)"), fmt=output)


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
    with open_fleet(file, state, wait=wait) as fleet:
        result = fleet.evacuate(host, parallel=parallel)
    rows: list[dict[str, object]] = [
        {"vm": vm, "target": target, "detail": "recreated; local disk contents lost"}
        for vm, target in sorted(result.recreated.items())
    ]
    rows += [
        {"vm": vm, "target": "", "detail": "stays: " + "; ".join(r)}
        for vm, r in result.stuck.items()
    ]
    rows += [{"vm": vm, "target": "", "detail": f"failed: {e}"} for vm, e in result.failed.items()]
    data = {
        "host": host,
        "recreated": dict(result.recreated),
        "stuck": {vm: list(r) for vm, r in result.stuck.items()},
        "failed": dict(result.failed),
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
