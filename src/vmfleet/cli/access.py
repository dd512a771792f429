"""Reaching the VMs: ssh, ssh-config, inventory, ips, exec, console."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from typer import _click as click
from typer.core import TyperCommand

from vmfleet.cli import completion
from vmfleet.cli.common import FleetFile, Output, StateOpt, app, open_fleet
from vmfleet.cli.output import OutputFormat, console, emit, err_console
from vmfleet.errors import FleetError, GuestError, UsageError

if TYPE_CHECKING:
    from vmfleet.api import types as access

Target = Annotated[
    str,
    typer.Argument(
        help="VM: NAME, NAME-i or NAME@i (replica i).",
        show_default=False,
        autocompletion=completion.names,
    ),
]


@app.command()
def ssh(
    file: FleetFile,
    target: Target,
    command: Annotated[
        list[str] | None, typer.Argument(help="Command to run instead of a login shell (after --).")
    ] = None,
    password: Annotated[
        bool, typer.Option("--password", help="Log in with a password instead of the key.")
    ] = False,
    state: StateOpt = None,
) -> None:
    """Open an SSH session on a VM (host key verified from the first connection).

    On a replicated template without an index, lists its replicas and exits 2.
    """
    from vmfleet.api import types as access  # the engine loads with the command

    with open_fleet(file, state) as fleet:
        instances = fleet.resolve([target])
        endpoints = fleet.endpoints([target], readonly=False)
    if len(endpoints) > 1 or (
        instances and instances[0].index is not None and target == instances[0].template
    ):
        emit(
            [{"vm": e.vm, "state": e.state, "address": _address(e)} for e in endpoints],
            fmt=OutputFormat.table,
            title=f"{target} has {len(endpoints)} replicas",
            columns=[("vm", "VM"), ("state", "State"), ("address", "Address")],
        )
        err_console.print(f"pick one: vmfleet ssh {file} {target}@0")
        raise typer.Exit(2)
    (endpoint,) = endpoints
    access.require_reachable(endpoint)
    argv = access.ssh_argv(endpoint, password=password, command=command or None)
    if shutil.which(argv[0]) is None:
        raise FleetError("the ssh client is not installed (apt-get install openssh-client)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)


def _address(ep: access.Endpoint) -> str | None:
    if ep.address is None:
        return None
    return f"{ep.address}:{ep.port}" if ep.port != 22 else ep.address


@app.command("ssh-config")
def ssh_config(file: FleetFile, state: StateOpt = None) -> None:
    """Print a Host block per VM; `Include` it in ~/.ssh/config and `ssh NAME` just works."""
    with open_fleet(file, state, run_log=False) as fleet:
        text = fleet.ssh_config()
    sys.stdout.write(f"# vmfleet ssh-config for fleet {fleet.name} ({file})\n" + text)


@app.command()
def inventory(
    file: FleetFile,
    list_: Annotated[
        bool, typer.Option("--list", help="Dynamic inventory JSON (Ansible).")
    ] = False,
    host: Annotated[str | None, typer.Option("--host", help="One host's vars as JSON.")] = None,
    output: Output = OutputFormat.yaml,
    state: StateOpt = None,
) -> None:
    """An Ansible inventory of the fleet: groups per template, group, host and label."""
    from vmfleet.api import types as access  # the engine loads with the command

    with open_fleet(file, state, run_log=False) as fleet:
        endpoints = fleet.endpoints()
        inv = fleet.inventory()
    if host is not None:
        match = [e for e in endpoints if e.vm == host]
        sys.stdout.write(json.dumps(access.hostvars(match[0]) if match else {}, indent=2) + "\n")
    elif list_ or output is OutputFormat.json:
        sys.stdout.write(json.dumps(access.dynamic_inventory(inv), indent=2) + "\n")
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(inv, sort_keys=False))


def env_name(vm: str) -> str:
    """A shell variable name for a VM: `k8s-master1` → `K8S_MASTER1`."""
    return re.sub(r"[^A-Z0-9_]", "_", vm.upper())


@app.command()
def ips(file: FleetFile, output: Output = OutputFormat.table, state: StateOpt = None) -> None:
    """Each VM's address as NAME=IP lines (shell-sourceable, like vm-ips.env), or -o json.

    User-mode VMs give 127.0.0.1 and NAME_SSH_PORT. VMs without an address yet are left out.
    """
    with open_fleet(file, state, run_log=False) as fleet:
        found = fleet.ips()
    if output is not OutputFormat.table:
        emit(
            [],
            fmt=output,
            columns=[],
            data={vm: {"address": e.address, "port": e.port} for vm, e in found.items()},
        )
        return
    for vm, ep in found.items():
        sys.stdout.write(f"{env_name(vm)}={ep.address}\n")
        if ep.port != 22:
            sys.stdout.write(f"{env_name(vm)}_SSH_PORT={ep.port}\n")


_AFTER_DASHES = "vmfleet.after_dashes"


class _DashDashCommand(TyperCommand):
    """Remembers the words after `--`: click passes them on as plain arguments, so a target
    and a command word with the same text (`exec f web -- echo web`) could not be told apart."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            ctx.meta[_AFTER_DASHES] = args[args.index("--") + 1 :]
        return super().parse_args(ctx, args)


@app.command("exec", cls=_DashDashCommand)
def exec_(
    cli: typer.Context,
    file: FleetFile,
    targets: Annotated[
        list[str],
        typer.Argument(
            help="VMs, templates (all replicas), groups or `all`, then -- and the command."
        ),
    ],
    timeout: Annotated[float, typer.Option(help="Seconds per VM.")] = 300.0,
    output: Output = OutputFormat.table,
    state: StateOpt = None,
) -> None:
    """Run a command over SSH on many VMs in parallel: live status, then each VM's output
    and exit code. Exits 1 when any VM failed."""
    command: list[str] = cli.meta.get(_AFTER_DASHES, [])
    names = targets[: len(targets) - len(command)]
    if not command or not names:
        raise UsageError("usage: vmfleet exec FILE TARGET... -- COMMAND")
    with open_fleet(file, state) as fleet:
        results = fleet.exec(names, " ".join(command), timeout=timeout)
    if output is not OutputFormat.table:
        emit(
            [],
            fmt=output,
            columns=[],
            data=[
                {
                    "vm": r.vm,
                    "exit_status": r.exit_status,
                    "stdout": r.stdout,
                    "stderr": r.stderr,
                    "error": r.error,
                    "seconds": round(r.seconds, 2),
                }
                for r in results
            ],
        )
    else:
        for r in results:
            status = f"exit {r.exit_status}" if r.error is None else r.error
            colour = "green" if r.ok else "red"
            console.print(f"[bold]== {r.vm}[/] [{colour}]{status}[/]", highlight=False)
            if r.stdout:
                sys.stdout.write(r.stdout if r.stdout.endswith("\n") else r.stdout + "\n")
            if r.stderr:
                sys.stdout.write(r.stderr if r.stderr.endswith("\n") else r.stderr + "\n")
            sys.stdout.flush()
    failed = [r.vm for r in results if not r.ok]
    if failed:
        raise FleetError(f"{len(failed)} of {len(results)} VMs failed: {', '.join(failed)}")


@app.command("console")
def console_(file: FleetFile, vm: Target, state: StateOpt = None) -> None:
    """Attach to a VM's serial console (virsh console; Ctrl-] leaves)."""
    with open_fleet(file, state) as fleet:
        (endpoint,) = fleet.endpoints([vm])
        uri = fleet.host_uri(endpoint.host)
    if endpoint.state != "running":
        raise GuestError(f"is {endpoint.state}, not running", vm=endpoint.vm)
    if shutil.which("virsh") is None:
        raise FleetError("virsh is not installed (apt-get install libvirt-clients)")
    argv = ["virsh", "-c", uri, "console", endpoint.vm]
    sys.stdout.flush()
    os.execvp(argv[0], argv)
