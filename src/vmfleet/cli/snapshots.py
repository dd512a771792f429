"""`vmfleet snapshot create|list|revert|delete`: one VM, a group (--group) or all (--all)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vmfleet.cli import render
from vmfleet.cli.common import FleetFile, Output, StateOpt, WaitOpt, app, open_fleet
from vmfleet.cli.output import OutputFormat, console, emit
from vmfleet.core.snapshots import DEFAULT_TIMEOUT as SNAPSHOT_TIMEOUT
from vmfleet.errors import FleetError, UsageError
from vmfleet.spec.units import format_size

if TYPE_CHECKING:
    from vmfleet.api.types import SnapshotResult

snapshot_app = typer.Typer(
    help="Snapshots of VMs, groups or the whole fleet: create, list, revert, delete.",
    no_args_is_help=True,
)
app.add_typer(snapshot_app, name="snapshot")

Targets = Annotated[
    list[str],
    typer.Argument(
        help="TARGET... NAME: VMs, templates or groups, then the snapshot's name (last).",
        show_default=False,
    ),
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every VM of the fleet, at one moment.")]
GroupOpt = Annotated[
    str | None, typer.Option("--group", "-g", help="Every VM of this group, at one moment.")
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds each VM's snapshot call may take.")
]


class SnapshotType(StrEnum):
    auto = "auto"
    internal = "internal"
    external = "external"


_RESULT_COLUMNS = [
    ("vm", "VM"),
    ("ok", "OK"),
    ("type", "Type"),
    ("consistency", "Consistency"),
    ("seconds", "Seconds"),
    ("detail", "Detail"),
]


def _split(targets: list[str]) -> tuple[list[str], str]:
    if not targets:
        raise UsageError("name the snapshot (the last argument)")
    return targets[:-1], targets[-1]


def _result_rows(results: Sequence[SnapshotResult]) -> list[dict[str, object]]:
    return [
        {
            "vm": r.vm,
            "ok": r.ok,
            "type": r.kind,
            "consistency": r.consistency,
            "pruned": list(r.pruned),
            "seconds": round(r.seconds, 2),
            "detail": r.detail + (f"; retention removed {', '.join(r.pruned)}" if r.pruned else ""),
        }
        for r in results
    ]


def _fail_if_any(results: Sequence[SnapshotResult]) -> None:
    failed = [r for r in results if not r.ok]
    if failed:
        raise FleetError(
            f"{len(failed)} of {len(results)} VMs failed: "
            + "; ".join(f"{r.vm}: {r.detail}" for r in failed)
        )


@snapshot_app.command("create")
def create(
    file: FleetFile,
    targets: Targets,
    all_vms: AllOpt = False,
    group: GroupOpt = None,
    timeout: TimeoutOpt = SNAPSHOT_TIMEOUT,
    kind: Annotated[
        SnapshotType | None,
        typer.Option("--type", help="internal or external (default: each VM's snapshot_type)."),
    ] = None,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
) -> None:
    """Snapshot VMs at one moment: freeze (guest agent) or pause, snapshot all, thaw/resume.

    Old snapshots beyond the group's or fleet's `snapshots: {keep: N}` are then deleted.
    """
    vms, name = _split(targets)
    with open_fleet(file, state, wait=wait) as fleet:
        report = fleet.snapshot_create(
            name,
            vms,
            group=group,
            all_vms=all_vms,
            timeout=timeout,
            kind=kind.value if kind else None,
        )
    rows = _result_rows(report.results)
    window = None if report.pause_window is None else round(report.pause_window, 3)
    emit(
        rows,
        fmt=output,
        columns=_RESULT_COLUMNS,
        title=f"snapshot {name}",
        data={
            "snapshot": name,
            "pause_window_seconds": window,
            "total_seconds": round(report.total, 3),
            "members": rows,
        },
    )
    if output is OutputFormat.table:
        held = "no VM was frozen or paused" if window is None else f"pause window {window} s"
        console.print(f"{held}; total {report.total:.2f} s")
    _fail_if_any(report.results)


@snapshot_app.command("list")
def list_snapshots(
    file: FleetFile,
    vms: Annotated[list[str] | None, typer.Argument(help="Only these VMs.")] = None,
    group: GroupOpt = None,
    state: StateOpt = None,
    output: Output = OutputFormat.table,
) -> None:
    """Snapshots per VM, read from libvirt: name, time, type, VM state, parent, size."""
    with open_fleet(file, state) as fleet:
        rows = [render.plain(row) for row in fleet.snapshot_list(vms or (), group=group)]
    for row in rows:
        size = row["size_bytes"]
        row["size"] = format_size(size) if isinstance(size, int) else None
    emit(
        rows,
        fmt=output,
        columns=[
            ("vm", "VM"),
            ("name", "Snapshot"),
            ("time", "Time"),
            ("type", "Type"),
            ("vm_state", "VM state"),
            ("parent", "Parent"),
            ("size", "Size"),
            ("consistency", "Consistency"),
        ],
    )


@snapshot_app.command("revert")
def revert(
    file: FleetFile,
    targets: Targets,
    all_vms: AllOpt = False,
    group: GroupOpt = None,
    timeout: TimeoutOpt = SNAPSHOT_TIMEOUT,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
) -> None:
    """Revert VMs to a snapshot, each back to the power state it had then."""
    _each(file, targets, all_vms, group, state, wait, output, "revert", timeout)


@snapshot_app.command("delete")
def delete(
    file: FleetFile,
    targets: Targets,
    all_vms: AllOpt = False,
    group: GroupOpt = None,
    timeout: TimeoutOpt = SNAPSHOT_TIMEOUT,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
) -> None:
    """Delete a snapshot of VMs and free its space."""
    _each(file, targets, all_vms, group, state, wait, output, "delete", timeout)


def _each(
    file: Path,
    targets: list[str],
    all_vms: bool,
    group: str | None,
    state: Path | None,
    wait: float,
    output: OutputFormat,
    verb: str,
    timeout: float,
) -> None:
    vms, name = _split(targets)
    with open_fleet(file, state, wait=wait) as fleet:
        run = fleet.snapshot_revert if verb == "revert" else fleet.snapshot_delete
        results = run(name, vms, group=group, all_vms=all_vms, timeout=timeout)
    emit(_result_rows(results), fmt=output, columns=_RESULT_COLUMNS, title=f"snapshot {name}")
    _fail_if_any(results)
