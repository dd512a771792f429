"""The fleet's life: validate, show, convert, plan, up, down, list, start, stop, reboot.

Each command parses its arguments, asks what must be asked, calls `Fleet` and renders.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vmfleet.cli import completion, render
from vmfleet.cli.cluster import disks_text
from vmfleet.cli.common import (
    FleetFile,
    Output,
    StateOpt,
    WaitOpt,
    WorkersOpt,
    app,
    load_fleet,
    open_fleet,
)
from vmfleet.cli.output import OutputFormat, console, emit
from vmfleet.cli.planview import show_plan

if TYPE_CHECKING:
    from vmfleet.api import Confirm
    from vmfleet.core.plan import Plan

Targets = Annotated[
    list[str] | None,
    typer.Argument(
        help="Only these: VM names, NAME@i, templates (all replicas) or groups (nested too).",
        show_default=False,
        autocompletion=completion.names,
    ),
]
NeededTargets = Annotated[
    list[str],
    typer.Argument(
        help="VM names, NAME@i, templates (all replicas), groups (nested too) or `all`.",
        show_default=False,
        autocompletion=completion.names,
    ),
]


def _ask(question: Confirm) -> bool:
    return typer.confirm(question.question)


@app.command()
def validate(file: FleetFile, output: Output = OutputFormat.table) -> None:
    """Check a fleet file and summarise it; every problem is listed with file:line:column.

    Beyond the file itself: referenced files exist (user-data and secret files inside the
    fleet's folder or `trusted_paths`), `{env:}` secrets are set, and each VM's user-data
    renders to valid cloud-config. Exits 2 when there are problems. No host is touched.
    """
    with open_fleet(file, None, run_log=False) as fleet:
        summary = fleet.validate()
    rows = [render.plain(t) for t in summary.details]
    emit(
        rows,
        fmt=output,
        title=f"{file} ({summary.format}): fleet {summary.fleet}",
        columns=[
            ("template", "Template"),
            ("replicas", "Replicas"),
            ("vms", "VMs"),
            ("vcpus", "vCPUs"),
            ("memory", "Memory"),
            ("disk", "Disk"),
        ],
        data={**render.plain(summary), "file": str(file)},
    )
    if output is OutputFormat.table:
        t, v, g = summary.templates, summary.vms, summary.groups
        console.print(
            f"[green]valid:[/] {t} template{'s' if t != 1 else ''} give{'' if t != 1 else 's'} "
            f"{v} VM{'s' if v != 1 else ''}" + (f", {g} groups" if g else "")
        )


@app.command()
def show(file: FleetFile, output: Output = OutputFormat.table) -> None:
    """Show every VM the fleet file expands to: names, sizes, MACs, IPs, groups, labels."""
    with open_fleet(file, None, run_log=False) as fleet:
        rows = [render.plain(vm) for vm in fleet.show()]
    emit(
        rows,
        fmt=output,
        title=f"fleet {fleet.name}: {len(rows)} VMs",
        columns=[
            ("name", "Name"),
            ("template", "Template"),
            ("vcpus", "vCPUs"),
            ("memory", "Memory"),
            ("disk", "Disk"),
            ("mac", "MAC"),
            ("ip", "IP"),
            ("groups", "Groups"),
            ("labels", "Labels"),
        ],
    )


@app.command()
def convert(file: FleetFile) -> None:
    """Print the native fleet-file form of any supported format (validated first)."""
    import yaml

    loaded = load_fleet(file)
    header = f"# converted by vmfleet from {file.name} ({loaded.format})\n"
    data = loaded.document.data
    sys.stdout.write(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


@app.command()
def plan(
    file: FleetFile,
    targets: Targets = None,
    output: Output = OutputFormat.table,
    prune: Annotated[
        bool, typer.Option(help="Show VMs no longer in the spec as removals.")
    ] = False,
    restart: Annotated[
        bool, typer.Option(help="Show the restarts of VMs whose change waits for a reboot.")
    ] = False,
    state: StateOpt = None,
    explain: Annotated[
        str | None,
        typer.Option(help="Show, host by host, why this VM goes where it goes (and no plan)."),
    ] = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode",
            help="Exit 0 when nothing would change, 2 when something would, 1 on an error.",
        ),
    ] = False,
) -> None:
    """Show what `up` would create, change and delete. Touches nothing."""
    with open_fleet(file, state, run_log=False) as fleet:
        if explain:
            from vmfleet.cli.hosts import show_explanation

            show_explanation(fleet, explain, output)
            return
        the_plan = fleet.plan(targets or (), prune=prune, restart=restart)
        if output is OutputFormat.table:
            for host in fleet.kvm_unknown():
                console.print(f"host {host}: kvm: unknown (probed at up)", highlight=False)
        show_plan(the_plan, output=output)
    if detailed_exitcode and not the_plan.empty:
        raise typer.Exit(2)


@app.command()
def up(
    file: FleetFile,
    targets: Targets = None,
    prune: Annotated[bool, typer.Option(help="Also remove VMs no longer in the spec.")] = False,
    restart: Annotated[
        bool,
        typer.Option(
            help="Restart running VMs whose change needs a reboot (asks first unless --yes)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    workers: WorkersOpt = 8,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
) -> None:
    """Make the hosts match the fleet file (only the named VMs, templates or groups, when
    given): create, change and start VMs, then wait until they are ready. Exits 1 if any
    VM failed."""

    def draw(the_plan: Plan, _pruning: bool) -> None:
        if output is OutputFormat.table:
            show_plan(the_plan, output=output)

    with open_fleet(file, state, wait=wait, on_plan=draw) as fleet:
        result = fleet.up(
            targets or (),
            prune=prune,
            restart=restart,
            workers=workers,
            confirm=None if yes else _ask,
        )
    if not result.up_to_date or output is not OutputFormat.table:
        render.outcomes(result.outcomes, output)  # up to date: a row per VM waited for
    else:
        pending = len(result.plan.pending)
        console.print(
            f"fleet {result.fleet} is up to date: nothing to do "
            f"({len(result.plan.actions)} VMs unchanged"
            + (f", {pending} with changes pending a restart: up --restart" if pending else "")
            + ")"
        )
    if result.groups and output is OutputFormat.table:
        render.member_outcomes(result.groups, output)
    result.raise_for_failures()


@app.command()
def down(
    file: FleetFile,
    targets: Targets = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    workers: WorkersOpt = 8,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
    graceful: Annotated[
        bool,
        typer.Option(
            "--graceful", help="Ask guests to shut down first (pulled after 60 s if still on)."
        ),
    ] = False,
) -> None:
    """Stop and remove the fleet's VMs (all, or the named VMs, templates or groups), their
    disks and seeds. Base images stay. Running VMs are pulled at once (destroyed) unless
    --graceful."""
    with open_fleet(file, state, wait=wait) as fleet:
        result = fleet.down(
            targets or (),
            workers=workers,
            confirm=None if yes else _ask,
            graceful=60.0 if graceful else None,
        )
    if not result.outcomes and output is OutputFormat.table:
        console.print(f"fleet {result.fleet}: no VMs to remove")
        return
    render.outcomes(result.outcomes, output)
    result.raise_for_failures()


class ListFormat(StrEnum):
    """`list` also has `wide`: the table with the login user."""

    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


@app.command("list")
def list_vms(
    file: FleetFile,
    output: Annotated[
        ListFormat,
        typer.Option("--output", "-o", help="Output format.", case_sensitive=False),
    ] = ListFormat.table,
    state: StateOpt = None,
) -> None:
    """Every VM of the fleet with host, state, vCPUs, memory, disk, IP and uptime (and the
    login user with `-o wide`); the state says when a VM is being migrated (another
    command's move) or runs elsewhere than its `host:` pin; HA VMs with their cluster's
    state and each disk's DRBD role and sync state."""
    with open_fleet(file, state, run_log=False) as fleet:
        vms = fleet.list()
    rows = [render.plain(vm) for vm in vms]
    disks = {vm.name: disks_text(vm.ha) for vm in vms if vm.ha}
    emit(
        [
            {
                **r,
                "state": render.vm_state(vm),
                "pending": "next boot" if r["pending"] else "",
                "disks": disks.get(r["name"]),
            }
            for vm, r in zip(vms, rows, strict=True)
        ],
        data=rows,
        fmt=OutputFormat.table if output is ListFormat.wide else OutputFormat(output.value),
        title=f"fleet {fleet.name}",
        columns=[
            ("template", "Template"),
            ("name", "VM"),
            ("host", "Host"),
            ("state", "State"),
            ("vcpus", "vCPUs"),
            ("memory", "Memory"),
            ("disk", "Disk"),
            ("ip", "IP"),
            ("uptime", "Uptime"),
            ("pending", "Pending restart"),
            *([("disks", "HA disks")] if disks else []),
            *([("user", "User")] if output is ListFormat.wide else []),
        ],
    )


app.command("ls", hidden=True, help="Alias of list.")(list_vms)


def _power(file: Path, targets: list[str], state: Path | None, verb: str) -> None:
    with open_fleet(file, state) as fleet:
        result = {"start": fleet.start, "stop": fleet.stop, "reboot": fleet.reboot}[verb](targets)
    for outcome in result.outcomes:
        console.print(f"{outcome.vm}: {outcome.detail}")
    result.raise_for_failures()


@app.command()
def start(file: FleetFile, targets: NeededTargets, state: StateOpt = None) -> None:
    """Start VMs of the fleet."""
    _power(file, targets, state, "start")


@app.command()
def stop(file: FleetFile, targets: NeededTargets, state: StateOpt = None) -> None:
    """Shut VMs down gracefully (forced after a timeout)."""
    _power(file, targets, state, "stop")


@app.command()
def reboot(file: FleetFile, targets: NeededTargets, state: StateOpt = None) -> None:
    """Reboot VMs of the fleet."""
    _power(file, targets, state, "reboot")
