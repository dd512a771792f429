"""Files and ports: `vmfleet scp` and `vmfleet port-forward`, through the fleet's key and its
verified known_hosts, as `vmfleet ssh`."""

from __future__ import annotations

import os
import re
import shutil
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from vmfleet.cli import completion
from vmfleet.cli.common import FleetFile, StateOpt, app, open_fleet
from vmfleet.errors import FleetError, UsageError

if TYPE_CHECKING:
    from vmfleet.api import types as access

_REMOTE = re.compile(r"^(?P<vm>[a-z0-9][a-z0-9@-]*):")
_PORTS = re.compile(r"^(?:(?P<local>\d{1,5}):)?(?P<remote>\d{1,5})$")


def remote_vm(paths: list[str]) -> str:
    """The one VM `VM:path` arguments name; UsageError for none or several."""
    vms = {m["vm"] for p in paths if (m := _REMOTE.match(p))}
    if len(vms) != 1:
        raise UsageError(
            "name exactly one VM as VM:PATH (e.g. vmfleet scp ./app.tar web-0:/tmp/); "
            f"found {', '.join(sorted(vms)) or 'none'}"
        )
    return vms.pop()


def ports(spec: str) -> tuple[int, int]:
    """(local, remote) from `LOCAL:REMOTE` or `PORT` (the same on both ends)."""
    match = _PORTS.match(spec)
    if not match:
        raise UsageError(f"{spec!r} is not LOCAL:REMOTE or PORT")
    remote = int(match["remote"])
    local = int(match["local"] or remote)
    if not (0 < local < 65536 and 0 < remote < 65536):
        raise UsageError(f"{spec!r}: ports are 1-65535")
    return local, remote


def _exec(argv: list[str]) -> None:
    if shutil.which(argv[0]) is None:
        raise FleetError(f"{argv[0]} is not installed (apt-get install openssh-client)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)


def _endpoint(file: FleetFile, state: StateOpt, vm: str) -> access.Endpoint:
    from vmfleet.api import types as access  # the engine loads with the command

    with open_fleet(file, state) as fleet:
        endpoints = fleet.endpoints([vm])
    if len(endpoints) != 1:
        raise UsageError(f"{vm} names {len(endpoints)} VMs; name one (NAME-i or NAME@i)")
    access.require_reachable(endpoints[0])
    return endpoints[0]


@app.command()
def scp(
    file: FleetFile,
    paths: Annotated[
        list[str], typer.Argument(help="SOURCE... DEST; a path on the VM is VM:PATH.")
    ],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Copy folders.")] = False,
    state: StateOpt = None,
) -> None:
    """Copy files to or from a VM with scp (host key verified as for `vmfleet ssh`).

    The fleet file comes from -f, $VMFLEET_FILE or vmfleet.yaml (never the first path).
    """
    if len(paths) < 2:
        raise UsageError("give at least one source and a destination")
    vm = remote_vm(paths)
    endpoint = _endpoint(file, state, vm)
    named = [endpoint.vm + p.removeprefix(vm) if p.startswith(f"{vm}:") else p for p in paths]
    from vmfleet.api import types as access

    _exec(access.scp_argv(endpoint, named, recursive=recursive))


@app.command("port-forward")
def port_forward(
    file: FleetFile,
    vm: Annotated[
        str,
        typer.Argument(
            help="VM: NAME, NAME-i or NAME@i.",
            show_default=False,
            autocompletion=completion.names,
        ),
    ],
    spec: Annotated[
        str, typer.Argument(help="LOCAL:REMOTE (or PORT): 127.0.0.1:LOCAL reaches REMOTE.")
    ],
    state: StateOpt = None,
) -> None:
    """Forward 127.0.0.1:LOCAL to a port on a VM over SSH until Ctrl-C."""
    local, remote = ports(spec)
    endpoint = _endpoint(file, state, vm)
    print(f"forwarding 127.0.0.1:{local} -> {endpoint.vm}:{remote} (Ctrl-C stops)", flush=True)
    from vmfleet.api import types as access

    _exec(access.forward_argv(endpoint, local=local, remote=remote))
