"""The `vmfleet` command: a skin over `vmfleet.Fleet` that parses, asks and renders.

Exit codes: 0 success, 1 an operation failed, 2 bad input (spec or command line),
130 interrupted.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

from rich.markup import escape

from vmfleet.cli import completion, fleetfile, output
from vmfleet.cli.common import app
from vmfleet.cli.output import err_console
from vmfleet.errors import FleetError, SpecError

# Command modules register themselves on `app` when imported, in the order --help lists them.
# isort: off
from vmfleet.cli import lifecycle  # noqa: F401
from vmfleet.cli import images  # noqa: F401
from vmfleet.cli import access  # noqa: F401
from vmfleet.cli import transfer  # noqa: F401
from vmfleet.cli import groups  # noqa: F401
from vmfleet.cli import hosts  # noqa: F401
from vmfleet.cli import snapshots  # noqa: F401
from vmfleet.cli import init  # noqa: F401
from vmfleet.cli import events  # noqa: F401
from vmfleet.cli import serve  # noqa: F401
from vmfleet.cli import moves  # noqa: F401
from vmfleet.cli import farm  # noqa: F401
from vmfleet.cli import cluster  # noqa: F401

# isort: on


def run() -> None:
    """Console-script entry point: finds the fleet file, maps errors to messages and exit codes.

    Usage errors (exit 2), --help and Ctrl-C are handled by click in standalone mode;
    every FleetError propagates here and exits with its class's code (as JSON on stdout
    with `-o json`). With `plan --detailed-exitcode` an error exits 1, as Terraform's.
    """
    import typer.main

    # pydantic looks for plugins (an entry-point scan of every installed package, ~20 ms)
    # before its first validator; the CLI has none to offer them. A user's own setting wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    command = typer.main.get_command(app)
    if completion.COMPLETE_VAR in os.environ:
        completion.prepare(os.environ, command, cwd=Path.cwd())
    given = sys.argv[1:]
    try:
        args = fleetfile.rewrite(given, command, env=os.environ, cwd=Path.cwd())
    except fleetfile.ArgvError as error:
        err_console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    try:
        command.main(args=args, prog_name="vmfleet")
    except FleetError as error:
        if fleetfile.wants_json(args) and not output.document_written():
            sys.stdout.write(json.dumps({"error": error_json(error)}, indent=2) + "\n")
        else:
            err_console.print(
                f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True, emoji=False
            )
        detailed = "--detailed-exitcode" in args
        sys.exit(1 if detailed else error.exit_code)
    finally:
        # The work is done: spare the interpreter's shutdown a full garbage collection of
        # everything imported (pydantic, asyncssh, libvirt: ~1-2 s on a loaded host).
        # Connections and the store are closed already; only cycles stay uncollected.
        gc.freeze()


def error_json(error: FleetError) -> dict[str, object]:
    """An error as data: its kind, message, exit code and, for a spec, every problem."""
    data: dict[str, object] = {
        "type": type(error).__name__,
        "message": str(error),
        "exit_code": error.exit_code,
    }
    if isinstance(error, SpecError):
        data["problems"] = [
            {
                "file": p.position.file if p.position else None,
                "line": p.position.line if p.position else None,
                "column": p.position.column if p.position else None,
                "field": p.field,
                "message": p.message,
            }
            for p in error.problems
        ]
    return data


if __name__ == "__main__":
    run()
