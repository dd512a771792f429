"""What every command module shares: the typer app, common options, loading a fleet."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vmfleet.cli.output import OutputFormat, err_console
from vmfleet.engine.context import FleetContext, state_dir_for

if TYPE_CHECKING:
    from vmfleet.spec.load import LoadedFleet

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
    from vmfleet.spec.load import load  # pydantic loads here, not for `--help`

    loaded = load(path)
    for warning in loaded.document.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return loaded


StateOpt = Annotated[
    Path | None,
    typer.Option("--state", help="State folder (default: .vmfleet/ beside the fleet file)."),
]
WorkersOpt = Annotated[int, typer.Option("--workers", "-j", min=1, help="Parallel workers.")]
WaitOpt = Annotated[float, typer.Option("--wait", help="Seconds to wait for another run's lock.")]


@contextlib.contextmanager
def fleet_context(
    file: Path, state: Path | None, *, lock: bool, what: str, wait: float = 0.0
) -> Iterator[FleetContext]:
    from vmfleet.state.store import Store, fleet_lock

    loaded = load_fleet(file)
    state_dir = state_dir_for(loaded, state)
    guard = fleet_lock(state_dir, wait=wait, what=what) if lock else contextlib.nullcontext()
    with guard:
        ctx = FleetContext(loaded=loaded, store=Store(state_dir), state_dir=state_dir)
        try:
            yield ctx
        finally:
            ctx.close()
