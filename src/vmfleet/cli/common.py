"""What every command module shares: the typer app, common options, loading a fleet."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from vmfleet import logs
from vmfleet.cli.output import OutputFormat, err_console

# The API, the engine under it and the spec models (pydantic) load when a command first opens
# or loads a fleet, not when the commands are registered: `--help`, `--version` and shell
# completion never need them (tests/test_startup.py checks the modules `--help` imports).
if TYPE_CHECKING:
    from vmfleet.api import Fleet
    from vmfleet.core.plan import Plan
    from vmfleet.spec.load import LoadedFleet

app = typer.Typer(
    name="vmfleet",
    help="Run fleets of libvirt/QEMU virtual machines from one declarative file.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _show_version(value: bool) -> None:
    if value:
        from vmfleet import __version__

        typer.echo(f"vmfleet {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="Log what happens to stderr (-v events, -vv every libvirt call and command).",
        ),
    ] = 0,
    debug: Annotated[bool, typer.Option("--debug", help="The same as -vv.")] = False,
    file: Annotated[
        list[Path] | None,
        typer.Option(
            "--file",
            "-f",
            help="Fleet file or folder, repeatable, anywhere on the line (else $VMFLEET_FILE, "
            "else vmfleet.yaml or fleet.yaml here or in a parent folder).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run fleets of libvirt/QEMU virtual machines from one declarative file.

    `-f` reaches this callback only before commands without a fleet file (`init`): for the
    others `cli.fleetfile` takes it out and passes the fleet as their FILE argument.
    """
    logs.label_run(ctx.invoked_subcommand or "vmfleet")
    if debug or verbose >= 2:
        logs.to_stderr(logging.DEBUG)
    elif verbose:
        logs.to_stderr(logging.INFO)


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
    from vmfleet.spec.load import load

    loaded = load(path)
    for warning in loaded.document.warnings:
        err_console.print(
            f"[yellow]warning:[/] {escape(warning)}", highlight=False, emoji=False, soft_wrap=True
        )
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
    run_log: bool = True,
) -> Iterator[Fleet]:
    """The command's `Fleet`, drawing its progress on stderr; closed at the end.

    With `run_log` (commands that may change something; read-only ones pass False and leave
    the state folder as it was), every event of the run also goes to a
    new file in the state folder's `logs/`."""
    from vmfleet.api import Fleet
    from vmfleet.cli.progress import ProgressView

    loaded = load_fleet(file)
    with (
        ProgressView(on_plan) as view,
        Fleet(loaded, state=state, lock_wait=wait, on_event=view) as fleet,
    ):
        if run_log:
            logs.to_run_file(fleet.state_dir / "logs")
        yield fleet
