"""`vmfleet cluster`: HA VMs on Pacemaker clusters — status, standby, export, and the
cluster-routed lifecycle (up, down, start, stop, migrate) of the fleet's HA VMs."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from vmfleet.cli import render
from vmfleet.cli.common import FleetFile, Output, StateOpt, app, load_fleet, open_fleet
from vmfleet.cli.output import OutputFormat, console, emit

if TYPE_CHECKING:
    from vmfleet.api.types import HaVmState

cluster_app = typer.Typer(
    help="HA VMs on Pacemaker clusters: status, standby, export, up/down.", no_args_is_help=True
)
app.add_typer(cluster_app, name="cluster")


class ExportFormat(StrEnum):
    cib = "cib"
    pcs = "pcs"


@cluster_app.command()
def export(
    file: FleetFile,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="cib or pcs.")] = (
        ExportFormat.cib
    ),
    cluster: Annotated[str | None, typer.Option(help="Only this cluster.")] = None,
) -> None:
    """Print what `up` applies to each cluster, touching nothing: a `<cib>` with the fleet's
    configuration (for review, crm_verify, crm_simulate) or the equivalent `pcs` commands."""
    from vmfleet.api import Fleet  # the engine loads with the command

    with Fleet(load_fleet(file)) as fleet:
        print(fleet.cluster_export(fmt=fmt.value, cluster=cluster), end="")


@cluster_app.command()
def status(file: FleetFile, output: Output = OutputFormat.table, state: StateOpt = None) -> None:
    """Nodes (online, standby, offline, unclean) and each HA VM as the cluster sees it: its
    node (or a migration in flight), fail count, and each disk's DRBD role and sync state per
    node (drbdsetup, else linstor). A VM libvirt runs where the cluster does not is an error.
    Exits 1 on any problem."""
    rows: list[dict[str, object]] = []
    data: list[dict[str, object]] = []
    with open_fleet(file, state) as fleet:
        reports = fleet.cluster_status()
    for report in reports:
        for node in report.status.nodes:
            row: dict[str, object] = {"kind": "node", "name": node.name, "cluster": report.name,
                   "state": node.state, "where": "", "detail": ""}  # fmt: skip
            rows.append(row)
            data.append(row)
        for vm in report.vms:
            notes = (
                f"target {vm.target_role}" if vm.target_role else "",
                f"{vm.fail_count} failures" if vm.fail_count else "",
                disks_text(vm),
                f"error: {vm.problem}" if vm.problem else "",
            )
            row = {"kind": "vm", "name": vm.vm, "cluster": report.name, "state": vm.state,
                   "where": vm.where, "detail": ", ".join(n for n in notes if n)}  # fmt: skip
            rows.append(row)
            data.append({**row, **vm_data(vm)})
    emit(
        rows,
        fmt=output,
        title="clusters",
        columns=[
            ("kind", "Kind"),
            ("name", "Name"),
            ("cluster", "Cluster"),
            ("state", "State"),
            ("where", "Node"),
            ("detail", "Detail"),
        ],
        data=data,
    )
    bad = any(vm.problem for r in reports for vm in r.vms)
    if bad or any(n.unclean for r in reports for n in r.status.nodes):
        raise typer.Exit(1)


def disks_text(vm: HaVmState) -> str:
    """Each disk on one line part: `a_sda: syncing 42.5% (n1 Primary/UpToDate, ...)`."""
    parts = []
    for disk in vm.disks:
        copies = ", ".join(f"{r.node} {r.role}/{r.disk}" for r in disk.replicas)
        parts.append(f"{disk.resource}: {disk.state}" + (f" ({copies})" if copies else ""))
    return "; ".join(parts)


def vm_data(vm: HaVmState) -> dict[str, object]:
    """An HA VM's cluster view as plain data for -o json/yaml."""
    data = render.plain(vm)
    assert isinstance(data, dict)
    return {
        k: data[k] for k in ("nodes", "target_role", "fail_count", "migration", "outside", "disks")
    }


@cluster_app.command()
def standby(file: FleetFile, node: str, state: StateOpt = None) -> None:
    """Drain a node: Pacemaker moves its VMs away (live where allowed)."""
    with open_fleet(file, state) as fleet:
        fleet.standby(node, on=True)
    console.print(f"{node}: standby")


@cluster_app.command()
def unstandby(file: FleetFile, node: str, state: StateOpt = None) -> None:
    """Let a node run resources again."""
    with open_fleet(file, state) as fleet:
        fleet.standby(node, on=False)
    console.print(f"{node}: online")


@cluster_app.command()
def up(file: FleetFile, state: StateOpt = None) -> None:
    """Storage, definitions and cluster configuration of the fleet's HA VMs (idempotent)."""
    with open_fleet(file, state) as fleet:
        changes = fleet.cluster_up()
    for change in changes:
        console.print(f"{change.cluster}: {change.vm or '-'}: {change.action}", highlight=False)
    if not changes:
        console.print("nothing to change")


@cluster_app.command()
def down(
    file: FleetFile,
    vms: Annotated[list[str] | None, typer.Argument()] = None,
    state: StateOpt = None,
) -> None:
    """Delete HA VMs as seed 001's vm_delete does: stop, remove from Pacemaker, remove the
    definition, delete the storage."""
    with open_fleet(file, state) as fleet:
        changes = fleet.cluster_down(vms or ())
    for change in changes:
        console.print(f"{change.cluster}: {change.vm or '-'}: {change.action}", highlight=False)


@cluster_app.command()
def start(file: FleetFile, vm: str, state: StateOpt = None) -> None:
    """Start an HA VM through the cluster (target-role=Started) and wait for it."""
    with open_fleet(file, state) as fleet:
        node = fleet.cluster_start(vm)
    console.print(f"{vm}: running on {node}")


@cluster_app.command()
def stop(file: FleetFile, vm: str, state: StateOpt = None) -> None:
    """Stop an HA VM through the cluster (target-role=Stopped) and wait for it."""
    with open_fleet(file, state) as fleet:
        fleet.cluster_stop(vm)
    console.print(f"{vm}: stopped")


@cluster_app.command()
def migrate(file: FleetFile, vm: str, node: str, state: StateOpt = None) -> None:
    """Move an HA VM to NODE (live when allowed), wait until it runs there, clear the move."""
    with open_fleet(file, state) as fleet:
        source = fleet.cluster_migrate(vm, node)
    console.print(f"{vm}: {source} -> {node}")
