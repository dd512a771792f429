"""`vmfleet hosts`: each host's reachability, capabilities, capacity and allocation; and the
host-by-host explanation behind `vmfleet plan --explain VM`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from vmfleet.cli.common import FleetFile, Output, StateOpt, app, open_fleet
from vmfleet.cli.output import OutputFormat, console, emit
from vmfleet.errors import PlacementError
from vmfleet.spec.units import format_size

if TYPE_CHECKING:
    from vmfleet.api import Fleet


@app.command()
def hosts(
    file: FleetFile,
    output: Output = OutputFormat.table,
    state: StateOpt = None,
    probe: Annotated[
        bool,
        typer.Option(
            help="Boot the KVM probe on `domain_type: auto` hosts whose answer is not cached."
        ),
    ] = False,
) -> None:
    """Each host: reachable or not, capabilities (arches, kvm), capacity, allocation, VMs.

    Hosts are asked in parallel; one that does not answer is shown unreachable and does not
    hold up the others. Exits 1 when any host is unreachable.
    """
    with open_fleet(file, state, run_log=False) as fleet:
        rows = [dict(r) for r in fleet.hosts(probe=probe)]
    table = [_table_row(r) for r in rows]
    emit(
        table,
        fmt=output,
        title=f"hosts of fleet {fleet.name}",
        columns=[
            ("host", "Host"),
            ("status", "Status"),
            ("labels", "Labels"),
            ("type", "Type"),
            ("arches", "Arches"),
            ("cpus", "vCPUs used/limit"),
            ("memory", "Memory used/limit"),
            ("disk", "Disk used/limit"),
            ("vms", "VMs fleet/other"),
            ("detail", "Detail"),
        ],
        data=rows,
    )
    down = [str(r["host"]) for r in rows if not r["reachable"]]
    if down:
        raise typer.Exit(1)


def _table_row(row: dict[str, object]) -> dict[str, object]:
    moves = row["migrations"]
    assert isinstance(moves, dict)
    counts = [f"{len(moves[way])} migrating {way}" for way in ("in", "out") if moves[way]]
    row = {**row, "status": ", ".join([str(row["status"]), *counts])}
    if not row["reachable"]:
        return {**row, "detail": row["error"]}
    limit, used, raw = row["limit"], row["allocated"], row["capacity"]
    assert isinstance(limit, dict) and isinstance(used, dict) and isinstance(raw, dict)
    disk_limit = limit["disk"] or raw["disk"]  # no disk limit set: the pool's size
    kvm = row["kvm"]
    return {
        **row,
        "type": "kvm: unknown (probed at up)" if kvm is None else "kvm" if kvm else "qemu (TCG)",
        "cpus": f"{used['cpus']:g}/{limit['cpus']:g}",
        "memory": f"{format_size(int(used['memory']))}/{format_size(int(limit['memory']))}",
        "disk": f"{format_size(int(used['disk']))}/{format_size(int(disk_limit))}",
        "vms": f"{row['fleet_vms']}/{row['other_vms']}",
        "detail": f"{row['hostname']}, libvirt {row['libvirt']}",
    }


def show_explanation(fleet: Fleet, vm: str, output: OutputFormat) -> None:
    """Print, host by host, why `vm` goes (or went) where it does."""
    result = fleet.explain(vm)
    rows = [
        {
            "host": v.host,
            "verdict": "chosen" if v.chosen else ("possible" if v.ok else "rejected"),
            "reasons": list(v.reasons),
        }
        for v in result.verdicts
    ]
    data = {
        "vm": vm,
        "current_host": result.current_host,
        "hosts": rows,
        "unplaceable": list(result.failure),
    }
    unplaceable = bool(result.failure) and not result.current_host
    if output is not OutputFormat.table:
        emit(rows, fmt=output, columns=[], data=data)
        if unplaceable:  # the reasons are in the document already: one document, exit 1
            raise typer.Exit(PlacementError.exit_code)
        return
    if result.current_host:
        console.print(
            f"{vm} runs on {result.current_host} and stays there (running VMs move only "
            "on request: vmfleet migrate, drain); were it new, placement would decide:",
            highlight=False,
        )
    strategy = fleet.spec.placement.strategy
    console.print(
        f"placement of {vm}: among hosts not rejected, the best by node_preference, then "
        f"preferred affinity, then kvm, then {strategy} load, then host order",
        highlight=False,
    )
    colours = {"chosen": "green", "possible": "dim", "rejected": "red"}
    for row in rows:
        verdict = str(row["verdict"])
        reasons = "; ".join(row["reasons"])
        console.print(
            f"[{colours[verdict]}]{row['host']:<20} {verdict:<9}[/] {reasons}",
            highlight=False,
        )
    if unplaceable:
        raise PlacementError(
            f"{vm} cannot be placed:\n" + "\n".join(f"  - {r}" for r in result.failure)
        )
