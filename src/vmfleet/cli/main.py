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

from vmfleet import engine
from vmfleet.cli.common import (
    FleetFile,
    Output,
    StateOpt,
    WaitOpt,
    WorkersOpt,
    app,
    fleet_context,
    load_fleet,
)
from vmfleet.cli.output import OutputFormat, console, emit, err_console
from vmfleet.cli.progress import VmProgress
from vmfleet.core.expand import Instance, expand
from vmfleet.core.plan import Plan
from vmfleet.engine import checks
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, UsageError
from vmfleet.spec.load import load_text
from vmfleet.spec.units import format_size


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

    Beyond the file itself: referenced files exist (user-data and secret files inside the
    fleet's folder or `trusted_paths`), `{env:}` secrets are set, and each VM's user-data
    renders to valid cloud-config. Exits 2 when there are problems. No host is touched.
    """
    loaded = load_fleet(file)
    instances = expand(loaded.spec, fleet=loaded.name)
    checks.offline(loaded, instances)
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
    loaded = load_fleet(file)
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


def _plan_rows(plan: Plan, *, prune: bool) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for action in plan.actions:
        what = {
            "create": "create",
            "change": "change",
            "unchanged": "unchanged",
            "orphan": "remove" if prune else "orphan (kept; --prune removes)",
        }[action.kind]
        rows.append(
            {
                "vm": action.vm,
                "action": what,
                "host": action.host,
                "changes": [
                    f"{c.field}: {c.old} -> {c.new}" + ("" if c.live else " (next boot)")
                    for c in action.changes
                ],
            }
        )
    return rows


def _show_plan(plan: Plan, *, prune: bool, output: OutputFormat) -> None:
    rows = _plan_rows(plan, prune=prune)
    if output is not OutputFormat.table:
        emit(rows, fmt=output, columns=[])
        return
    colours = {"create": "green", "change": "yellow", "unchanged": "dim", "remove": "red"}
    for row in rows:
        action = str(row["action"])
        colour = colours.get(action.split(" ")[0], "magenta")
        sign = {"create": "+", "change": "~", "remove": "-", "unchanged": "="}.get(
            action.split(" ")[0], "?"
        )
        changes = "; ".join(row["changes"])  # type: ignore[arg-type]
        console.print(
            f"[{colour}]{sign} {row['vm']:<24} {action:<12}[/] on {row['host']}"
            + (f"  {changes}" if changes else ""),
            highlight=False,
        )
    counts = {k: len(plan.of(k)) for k in ("create", "change", "unchanged", "orphan")}
    console.print(
        f"plan: {counts['create']} to create, {counts['change']} to change, "
        f"{counts['unchanged']} unchanged, {counts['orphan']} not in the spec"
    )


@app.command()
def plan(
    file: FleetFile,
    output: Output = OutputFormat.table,
    prune: Annotated[
        bool, typer.Option(help="Show VMs no longer in the spec as removals.")
    ] = False,
    state: StateOpt = None,
    explain: Annotated[
        str | None,
        typer.Option(help="Show, host by host, why this VM goes where it goes (and no plan)."),
    ] = None,
) -> None:
    """Show what `up` would create, change and delete. Touches nothing."""
    with fleet_context(file, state, lock=False, what="plan") as ctx:
        if explain:
            from vmfleet.cli.hosts import explain as explain_vm

            explain_vm(ctx, explain, output)
            return
        _show_plan(engine.make_plan(ctx), prune=prune, output=output)


@app.command()
def up(
    file: FleetFile,
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
    """Make the hosts match the fleet file: create, change and start VMs, then wait until
    they are ready. Exits 1 if any VM failed."""
    with fleet_context(file, state, lock=True, what=f"up {file}", wait=wait) as ctx:
        checks.offline(ctx.loaded, ctx.instances(), images=False)
        cleaned = engine.recover(ctx)
        for item in cleaned:
            err_console.print(f"recovered: {item} (left by an interrupted run)")
        if engine.images.missing(ctx):
            _pull_with_bar(ctx, None)
        the_plan = engine.make_plan(ctx)
        engine.preflight(ctx, the_plan)
        if (
            the_plan.empty
            and not any(a.observed and a.observed.state == "shutoff" for a in the_plan.actions)
            and not (prune and the_plan.of("orphan"))
        ):
            if output is OutputFormat.table:
                console.print(
                    f"fleet {ctx.fleet} is up to date: nothing to do "
                    f"({len(the_plan.actions)} VMs unchanged)"
                )
            else:
                emit([], fmt=output, columns=[])
            group_cli.apply_after_up(ctx, created=(), output=output)
            return
        if restart and not yes and any(a.needs_restart for a in the_plan.of("change")):
            names = ", ".join(a.vm for a in the_plan.of("change") if a.needs_restart)
            if not typer.confirm(f"restart running VMs {names}?"):
                restart = False
        if prune and the_plan.of("orphan") and not yes:
            names = ", ".join(a.vm for a in the_plan.of("orphan"))
            if not typer.confirm(f"remove VMs no longer in the spec: {names}?"):
                prune = False
        if output is OutputFormat.table:
            _show_plan(the_plan, prune=prune, output=output)
        busy = [
            a.vm
            for a in the_plan.actions
            if a.kind != "unchanged" or (a.observed and a.observed.state == "shutoff")
        ]
        with VmProgress(f"up {ctx.fleet}", busy) as progress:
            results = engine.up(
                ctx,
                the_plan,
                progress=progress,
                workers=workers,
                prune=prune,
                restart=restart,
                hold=group_cli.held(ctx),
            )
        _report(results, output)
        group_cli.apply_after_up(ctx, created=group_cli.created_in(results), output=output)


def _report(results: list[engine.Outcome], output: OutputFormat) -> None:
    rows = [
        {
            "vm": r.vm,
            "action": r.action,
            "ok": r.ok,
            "detail": r.detail,
            "seconds": round(r.seconds, 1),
            "ready_seconds": None if r.ready_seconds is None else round(r.ready_seconds, 1),
        }
        for r in results
    ]
    emit(
        rows,
        fmt=output,
        columns=[
            ("vm", "VM"),
            ("action", "Action"),
            ("ok", "OK"),
            ("seconds", "Seconds"),
            ("detail", "Detail"),
        ],
    )
    failed = [r for r in results if not r.ok]
    if failed:
        raise FleetError(
            f"{len(failed)} of {len(results)} VMs failed: " + ", ".join(r.vm for r in failed)
        )


@app.command()
def down(
    file: FleetFile,
    vms: Annotated[list[str] | None, typer.Argument(help="Only these VMs.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    workers: WorkersOpt = 8,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
) -> None:
    """Stop and remove the fleet's VMs (all, or those named), their disks and seeds.
    Base images stay."""
    with fleet_context(file, state, lock=True, what=f"down {file}", wait=wait) as ctx:
        engine.recover(ctx)
        observation = engine.observe(ctx)
        targets = [o.name for o in observation.vms if not vms or o.name in vms]
        unknown = sorted(
            set(vms or []) - {o.name for o in observation.vms} - {i.name for i in ctx.instances()}
        )
        if unknown:
            raise UsageError(f"unknown VM {', '.join(unknown)} in fleet {ctx.fleet}")
        if (
            targets
            and not yes
            and not typer.confirm(
                f"remove {len(targets)} VM{'s' if len(targets) != 1 else ''}: {', '.join(targets)}?"
            )
        ):
            raise typer.Exit(1)
        with VmProgress(f"down {ctx.fleet}", targets) as progress:
            results = engine.down(ctx, vms or None, progress=progress, workers=workers)
        if not results and output is OutputFormat.table:
            console.print(f"fleet {ctx.fleet}: no VMs to remove")
            return
        _report(results, output)


@app.command("list")
def list_vms(
    file: FleetFile,
    output: Output = OutputFormat.table,
    state: StateOpt = None,
) -> None:
    """Every VM of the fleet with host, state, vCPUs, memory, disk, IP and uptime."""
    with fleet_context(file, state, lock=False, what="list") as ctx:
        rows = engine.listing(ctx)
    emit(
        rows,
        fmt=output,
        title=f"fleet {ctx.fleet}",
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
        ],
    )


app.command("ls", hidden=True, help="Alias of list.")(list_vms)


def _power(file: Path, vms: list[str], state: Path | None, verb: str) -> None:
    with fleet_context(file, state, lock=False, what=verb) as ctx:
        for result in engine.power(ctx, vms, verb):
            console.print(f"{result.vm}: {result.detail}")


@app.command()
def start(
    file: FleetFile, vms: Annotated[list[str], typer.Argument()], state: StateOpt = None
) -> None:
    """Start VMs of the fleet."""
    _power(file, vms, state, "start")


@app.command()
def stop(
    file: FleetFile, vms: Annotated[list[str], typer.Argument()], state: StateOpt = None
) -> None:
    """Shut VMs down gracefully (forced after a timeout)."""
    _power(file, vms, state, "stop")


@app.command()
def reboot(
    file: FleetFile, vms: Annotated[list[str], typer.Argument()], state: StateOpt = None
) -> None:
    """Reboot VMs of the fleet."""
    _power(file, vms, state, "reboot")


image_app = typer.Typer(help="Base images: download, list, remove.", no_args_is_help=True)
app.add_typer(image_app, name="image")


def _pull_with_bar(ctx: FleetContext, names: list[str] | None) -> list[str]:
    from rich.progress import (  # only when something is downloaded
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not err_console.is_terminal,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def report(image: str, done: int, total: int | None) -> None:
            if image not in tasks:
                tasks[image] = bar.add_task(f"pull {image}", total=total)
            bar.update(tasks[image], completed=done, total=total)

        return engine.images.pull(ctx, names, progress=report)


@image_app.command("pull")
def image_pull(
    file: FleetFile,
    names: Annotated[list[str] | None, typer.Argument(help="Only these images.")] = None,
    state: StateOpt = None,
) -> None:
    """Download the fleet's URL images into the cache (resumable, sha256-verified)."""
    with fleet_context(file, state, lock=False, what="image pull") as ctx:
        fetched = _pull_with_bar(ctx, names or None)
    console.print(f"pulled: {', '.join(fetched)}" if fetched else "all images are present")


@image_app.command("list")
def image_list(
    file: FleetFile, output: Output = OutputFormat.table, state: StateOpt = None
) -> None:
    """Each image: source, local file, hosts holding its base volume, disks that depend on it."""
    with fleet_context(file, state, lock=False, what="image list") as ctx:
        rows = engine.images.listing(ctx)
    emit(
        rows,
        fmt=output,
        title="images",
        columns=[
            ("image", "Image"),
            ("source", "Source"),
            ("local", "Local file"),
            ("size", "Size"),
            ("hosts", "On hosts"),
            ("dependants", "Used by"),
        ],
    )


@image_app.command("rm")
def image_rm(
    file: FleetFile,
    name: Annotated[str, typer.Argument(help="The image to remove.")],
    state: StateOpt = None,
) -> None:
    """Remove an image's base volumes and cached download; refused while disks depend on it."""
    with fleet_context(file, state, lock=True, what=f"image rm {name}") as ctx:
        removed = engine.images.remove(ctx, name)
    for item in removed:
        console.print(f"removed {item}")
    if not removed:
        console.print(f"image {name}: nothing to remove")


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except OSError as error:
        raise FleetError(f"cannot read {file}: {error.strerror}") from None


# Command modules for further capabilities register themselves on `app` when imported.
from vmfleet.cli import access  # noqa: E402,F401
from vmfleet.cli import groups as group_cli  # noqa: E402
from vmfleet.cli import hosts as _hosts  # noqa: E402,F401
from vmfleet.cli import moves as _moves  # noqa: E402,F401
from vmfleet.cli import snapshots as snapshot_cli  # noqa: E402,F401


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
