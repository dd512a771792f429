"""The `vmfleet` command: a skin over `vmfleet.Fleet` that parses, asks and renders.

Exit codes: 0 success, 1 an operation failed, 2 bad input (spec or command line),
130 interrupted.
"""

from __future__ import annotations

import gc
import sys

from rich.markup import escape

from vmfleet.cli.common import app
from vmfleet.cli.output import err_console
from vmfleet.errors import FleetError

# Command modules register themselves on `app` when imported, in the order --help lists them.
# isort: off
from vmfleet.cli import lifecycle  # noqa: F401
from vmfleet.cli import images  # noqa: F401
from vmfleet.cli import access  # noqa: F401
from vmfleet.cli import groups  # noqa: F401
from vmfleet.cli import hosts  # noqa: F401
from vmfleet.cli import snapshots  # noqa: F401
from vmfleet.cli import events  # noqa: F401
from vmfleet.cli import serve  # noqa: F401
from vmfleet.cli import moves  # noqa: F401
from vmfleet.cli import farm  # noqa: F401
from vmfleet.cli import cluster  # noqa: F401

# isort: on


def run() -> None:
    """Console-script entry point: maps errors to messages and exit codes.

    Usage errors (exit 2), --help and Ctrl-C are handled by typer in standalone mode;
    every FleetError propagates here and exits with its class's code.
    """
    try:
        app()
    except FleetError as error:
        err_console.print(
            f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True, emoji=False
        )
        sys.exit(error.exit_code)
    finally:
        # The work is done: spare the interpreter's shutdown a full garbage collection of
        # everything imported (pydantic, asyncssh, libvirt: ~1-2 s on a loaded host).
        # Connections and the store are closed already; only cycles stay uncollected.
        gc.freeze()


if __name__ == "__main__":
    run()
