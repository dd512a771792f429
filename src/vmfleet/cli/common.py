"""What every command module shares: the typer app, common options, loading a fleet."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vmfleet.api import Fleet
from vmfleet.cli.output import OutputFormat, err_console
from vmfleet.cli.progress import ProgressView
from vmfleet.core.plan import Plan
from vmfleet.spec.load import LoadedFleet, load

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
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, emoji=False)
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
def open_fleet(
    file: Path,
    state: Path | None,
    *,
    wait: float = 0.0,
    on_plan: Callable[[Plan, bool], None] | None = None,
) -> Iterator[Fleet]:
    """The command's `Fleet`, drawing its progress on stderr; closed at the end."""
    loaded = load_fleet(file)
    with (
        ProgressView(on_plan) as view,
        Fleet(loaded, state=state, lock_wait=wait, on_event=view) as fleet,
    ):
        yield fleet
