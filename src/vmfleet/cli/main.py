"""The `vmfleet` command: a thin layer over the library.

Exit codes: 0 success, 1 an operation failed, 2 bad input (spec or command line),
130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from vmfleet.cli.output import OutputFormat, console, emit, err_console
from vmfleet.core.expand import Instance, expand
from vmfleet.errors import FleetError
from vmfleet.spec.load import LoadedFleet, load, load_text
from vmfleet.spec.units import format_size

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


def _load(path: Path) -> LoadedFleet:
    loaded = load(path)
    for warning in loaded.document.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return loaded


def instance_row(inst: Instance) -> dict[str, object]:
    """One expanded VM as a flat row (also the JSON shape of `show`)."""
    f = inst.fields
    return {
        "name": inst.name,
        "template": inst.template,
        "index": inst.index,
        "vcpus": f.vcpus,
        "memory": format_size(f.memory),
        "memory_bytes": f.memory,
        "disk": format_size(f.disk),
        "disk_bytes": f.disk,
        "image": f.image,
        "mac": [n.mac for n in inst.nics],
        "ip": [n.ip for n in inst.nics if n.ip] or None,
        "networks": [n.network for n in inst.nics],
        "groups": list(inst.groups),
        "labels": f.labels,
        "host": f.host,
    }


@app.command()
def validate(file: FleetFile, output: Output = OutputFormat.table) -> None:
    """Check a fleet file and summarise it; every problem is listed with file:line:column.

    Exits 2 when the file has problems. Nothing on any host is touched.
    """
    loaded = _load(file)
    instances = expand(loaded.spec, fleet=loaded.name)
    rows = []
    for name, template in loaded.spec.vms.items():
        mine = [i for i in instances if i.template == name]
        first = mine[0].fields
        rows.append(
            {
                "template": name,
                "replicas": template.replicas,
                "vms": [i.name for i in mine],
                "vcpus": first.vcpus,
                "memory": format_size(first.memory),
                "disk": format_size(first.disk),
            }
        )
    summary = {
        "file": str(file),
        "format": loaded.format,
        "fleet": loaded.name,
        "templates": len(rows),
        "vms": len(instances),
        "groups": len(loaded.spec.groups),
        "valid": True,
        "details": rows,
    }
    emit(
        rows,
        fmt=output,
        title=f"{file} ({loaded.format}): fleet {loaded.name}",
        columns=[
            ("template", "Template"),
            ("replicas", "Replicas"),
            ("vms", "VMs"),
            ("vcpus", "vCPUs"),
            ("memory", "Memory"),
            ("disk", "Disk"),
        ],
        data=summary,
    )
    if output is OutputFormat.table:
        t, v = len(rows), len(instances)
        console.print(
            f"[green]valid:[/] {t} template{'s' if t != 1 else ''} give{'' if t != 1 else 's'} "
            f"{v} VM{'s' if v != 1 else ''}"
            + (f", {len(loaded.spec.groups)} groups" if loaded.spec.groups else "")
        )


@app.command()
def show(file: FleetFile, output: Output = OutputFormat.table) -> None:
    """Show every VM the fleet file expands to: names, sizes, MACs, IPs, groups, labels."""
    loaded = _load(file)
    rows = [instance_row(i) for i in expand(loaded.spec, fleet=loaded.name)]
    emit(
        rows,
        fmt=output,
        title=f"fleet {loaded.name}: {len(rows)} VMs",
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
    text = _read(file)
    document, fmt = load_text(text, file=str(file))
    from vmfleet.spec.load import parse

    parse(document)
    for warning in document.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    header = f"# converted by vmfleet from {file.name} ({fmt})\n"
    sys.stdout.write(header + yaml.safe_dump(document.data, sort_keys=False, allow_unicode=True))


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except OSError as error:
        raise FleetError(f"cannot read {file}: {error.strerror}") from None


def run() -> None:
    """Console-script entry point: maps errors to messages and exit codes.

    Usage errors (exit 2), --help and Ctrl-C are handled by typer in standalone mode;
    every FleetError propagates here and exits with its class's code.
    """
    try:
        app()
    except FleetError as error:
        err_console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    run()
