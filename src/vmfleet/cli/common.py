"""What every command module shares: the typer app, common options, loading a fleet."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from vmfleet.cli.output import OutputFormat, err_console
from vmfleet.engine.context import FleetContext, state_dir_for
from vmfleet.spec.load import LoadedFleet, load
from vmfleet.state.store import Store, fleet_lock

app = typer.Typer(
    name="vmfleet",
    help="Run fleets of libvirt/QEMU virtual machines from one declarative file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

FleetFile = Annotated[
    Path,
    typer.Argument(
        help="Fleet file: native YAML, Ansible inventory.yml, cluster vars or "
        "Kubernetes manifests (detected).",
        show_default=False,
    ),
]
Output = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="Output format.", case_sensitive=False)
]


def load_fleet(path: Path) -> LoadedFleet:
    loaded = load(path)
    for warning in loaded.document.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return loaded


StateOpt = Annotated[
    Path | None,
    typer.Option("--state", help="State folder (default: .vmfleet/ beside the fleet file)."),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers", "-j", min=1, help="VMs worked on at once per host (up: readiness waits aside)."
    ),
]
WaitOpt = Annotated[float, typer.Option("--wait", help="Seconds to wait for another run's lock.")]


@contextlib.contextmanager
def fleet_context(
    file: Path,
    state: Path | None,
    *,
    lock: bool,
    what: str,
    wait: float = 0.0,
    readonly: bool = False,
) -> Iterator[FleetContext]:
    """The fleet's context for one command; `readonly` commands (plan, list, status, ssh-config,
    inventory, ips) create and write nothing: no state folder, no lease, no key."""
    loaded = load_fleet(file)
    state_dir = state_dir_for(loaded, state)
    guard = fleet_lock(state_dir, wait=wait, what=what) if lock else contextlib.nullcontext()
    with guard:
        store = Store(state_dir, readonly=readonly)
        ctx = FleetContext(loaded=loaded, store=store, state_dir=state_dir)
        try:
            yield ctx
        finally:
            ctx.close()
