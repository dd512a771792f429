"""How a plan is shown, as a Terraform or kcli user expects: the hosts' networks and image
uploads, each VM with what it gets (host, sizes, addresses, readiness) or its changes (old ->
new, live or at next boot), and a "Plan: …" count; or rows for `-o json|yaml` where every VM
carries its steps and sizes and every host step its network or image."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfleet.cli.output import OutputFormat, console, emit
from vmfleet.spec.units import format_duration, format_size

_COLOURS = {"create": "green", "change": "yellow", "unchanged": "dim", "remove": "red"}
_SIGNS = {"create": "+", "change": "~", "remove": "-", "unchanged": "=", "start": ">"}
_HOST_SIGNS = {"network-create": "+", "image-upload": "+", "network-remove": "-"}

if TYPE_CHECKING:
    from vmfleet.core.expand import Instance, InstanceNic
    from vmfleet.core.plan import Action, Change, Facts, Plan, Step, Summary


def plan_rows(plan: Plan) -> list[dict[str, object]]:
    """One row per VM (with its steps, and what it gets) and one per host step (with its
    network's mode and CIDR or its image's size and format)."""
    rows: list[dict[str, object]] = []
    for action in plan.actions:
        rows.append(
            {
                "vm": action.vm,
                "action": _what(action),
                "host": action.host,
                "changes": [_change_text(c, say_live=False) for c in action.changes],
                "pending": [c.field for c in action.pending],
                "steps": [_step_row(s) for s in action.steps],
                **_vm_facts(action),
                "drift": (
                    None
                    if action.drift is None
                    else {"pinned": action.drift.pinned, "host": action.drift.host}
                ),
            }
        )
    for step in plan.host_steps:
        row: dict[str, object] = {
            "vm": None,
            "action": step.kind,
            "host": step.host,
            "target": step.target,
        }
        rows.append(row | _host_facts(plan.facts, step))
    return rows


def _what(action: Action) -> str:
    if action.kind == "orphan":
        return "remove" if action.steps else "orphan (kept; --prune removes)"
    if action.kind == "unchanged" and action.pending:
        return "pending"
    if action.kind == "unchanged" and action.steps:
        return "start"
    return action.kind


def _change_text(change: Change, *, say_live: bool = True) -> str:
    """`memory: 64MiB -> 128MiB (next boot)`, `disk: 16MiB -> 32MiB (live)`; JSON rows keep
    their old form, where a live change has no suffix."""
    when = " (live)" if change.live else " (next boot)"
    if change.live and not say_live:
        when = ""
    if change.old is None:
        return change.field + when
    return f"{change.field}: {_size(change.old)} -> {_size(change.new)}{when}"


def _size(value: object) -> object:
    return format_size(value) if isinstance(value, int) and value >= 1 << 20 else value


def _step_row(step: Step) -> dict[str, object]:
    row: dict[str, object] = {"step": step.kind}
    if step.target:
        row["target"] = step.target
    if step.kind == "grow-disk":
        row["live"] = step.live
    if step.changes:
        row["changes"] = [
            {"field": c.field, "old": c.old, "new": c.new, "live": c.live} for c in step.changes
        ]
    return row


def _vm_facts(action: Action) -> dict[str, object]:
    """What the VM gets (from the spec), or for a VM no longer in it what it has."""
    if action.instance is None:
        seen = action.observed
        if seen is None:
            return {}
        return {
            "vcpus": seen.vcpus,
            "memory": format_size(seen.memory_bytes),
            "memory_bytes": seen.memory_bytes,
            "disk": format_size(seen.disk_bytes) if seen.disk_bytes else None,
            "disk_bytes": seen.disk_bytes,
        }
    fields = action.instance.fields
    return {
        "image": fields.image,
        "vcpus": fields.vcpus,
        "memory": format_size(fields.memory),
        "memory_bytes": fields.memory,
        "disk": format_size(fields.disk),
        "disk_bytes": fields.disk,
        "data_disks": [
            {
                "name": disk.name or f"data-{n}",
                "size": format_size(disk.size),
                "size_bytes": disk.size,
                "format": disk.format,
            }
            for n, disk in enumerate(fields.data_disks)
        ],
        "nics": [
            {"network": n.network, "mode": n.mode, "mac": n.mac, "ip": _address(n)}
            for n in action.instance.nics
        ],
        "ips": [_address(n) for n in action.instance.nics if n.mode != "user"],
        "ready": {"wait_for": fields.ready.wait_for, "timeout": fields.ready.timeout},
    }


def _address(nic: InstanceNic) -> str | None:
    """The NIC's address as `list` shows it once the VM runs: the static one (written, or
    leased from the fleet's IPAM), `dhcp` when someone else's DHCP decides, None for a
    user-mode NIC (reached through a 127.0.0.1 forward chosen at `up`)."""
    if nic.ip:
        return nic.ip
    return None if nic.mode == "user" else "dhcp"


def _host_facts(facts: Facts, step: Step) -> dict[str, object]:
    if step.kind.startswith("network-") and step.target in facts.networks:
        net = facts.networks[step.target]
        return {"network": {"mode": net.mode, "cidr": net.cidr}}
    if step.kind == "image-upload" and step.target in facts.images:
        image = facts.images[step.target]
        size = image.size_bytes
        return {
            "image": {
                "source": image.source,
                "size": format_size(size) if size is not None else None,
                "size_bytes": size,
                "format": image.format,
                "prepare": image.prepare,
            }
        }
    return {}


def show_plan(plan: Plan, *, output: OutputFormat) -> None:
    """The plan as coloured lines in the order `up` runs it (hosts' networks and images, the
    VMs, network removals) and a "Plan: …" count; or as rows."""
    if output is not OutputFormat.table:
        emit(plan_rows(plan), fmt=output, columns=[])
        return
    setup = [s for s in plan.host_steps if s.kind != "network-remove"]
    teardown = [s for s in plan.host_steps if s.kind == "network-remove"]
    for step in setup:
        console.print(_host_line(plan.facts, step), highlight=False)
    for action in plan.actions:
        console.print(_vm_line(action), highlight=False)
    for drift in plan.drift:
        console.print(
            f"[magenta]! {drift.vm:<24} drift[/]        {drift.describe()}", highlight=False
        )
    for step in teardown:
        console.print(_host_line(plan.facts, step), highlight=False)
    from vmfleet.core.plan import summarize  # here: `vmfleet --help` loads no spec models

    line = summary_line(summarize(plan))
    if plan.drift:
        line += f", {len(plan.drift)} off their pinned host (not moved)"
    console.print(line, highlight=False)


def _host_line(facts: Facts, step: Step) -> str:
    """`+ network lab    create  on local  nat 192.168.88.0/24`, `+ image base  upload …`."""
    row = _host_facts(facts, step)
    sign = _HOST_SIGNS.get(step.kind, "*")
    colour = "red" if sign == "-" else "cyan"
    thing, verb = step.kind.split("-", 1)
    detail = ""
    if isinstance(net := row.get("network"), dict):
        detail = " ".join(str(v) for v in (net["mode"], net["cidr"]) if v)
    elif isinstance(image := row.get("image"), dict):
        what = " ".join(str(v) for v in (image["size"], image["format"]) if v)
        if image["prepare"] == "not cached":
            what += ", size known once prepared"
        elif image["size"] is None:
            what += (", size" if what else "size and format") + " known once pulled"
        detail = f"{what} from {image['source']}"
        if image["prepare"]:
            detail += f", prepare ({image['prepare']})"
    name = f"{thing} {step.target}"
    return f"[{colour}]{sign} {name:<24} {verb:<12}[/] on {step.host}" + (
        f"  {detail}" if detail else ""
    )


def _vm_line(action: Action) -> str:
    what = _what(action)
    kind = what.split(" ")[0]
    colour, sign = _COLOURS.get(kind, "magenta"), _SIGNS.get(kind, "!")
    line = f"[{colour}]{sign} {action.vm:<24} {what:<12}[/] on {action.host}"
    if action.kind == "create" and action.instance is not None:
        started = any(s.kind == "start" for s in action.steps)
        return line + "  " + describe_new(action.instance, started=started)
    if action.changes:
        line += "  " + "; ".join(_change_text(c) for c in action.changes)
    if action.steps and action.kind != "create":
        line += f"  [dim]steps: {', '.join(s.kind for s in action.steps)}[/]"
    return line


def describe_new(instance: Instance, *, started: bool = True) -> str:
    """A new VM in one line: `2 vCPUs, 1GiB memory, 10GiB disk + 20GiB data; lab
    192.168.88.10; ready: ssh within 5m`. Not `started` by `up` itself: a standby VM, or
    one its group starts (then the group's tier gate, not `ready`, is awaited)."""
    fields = instance.fields
    sizes = (
        f"{fields.vcpus} vCPU{'s' if fields.vcpus != 1 else ''}, "
        f"{format_size(fields.memory)} memory, {format_size(fields.disk)} disk"
    )
    sizes += "".join(f" + {format_size(d.size)} {d.name or 'data'}" for d in fields.data_disks)
    addresses = ", ".join(
        f"{n.network} {_address(n)}" if n.mode != "user" else "user-mode (127.0.0.1 forward)"
        for n in instance.nics
    )
    ready = fields.ready
    if ready.wait_for == "none":
        waits = "ready: not awaited"
    else:
        waits = f"ready: {ready.wait_for} within {format_duration(ready.timeout)}"
    if fields.power == "off":
        waits = "standby (not started)"
    elif not started:  # its group's boot order starts it, gated by the tier's readiness
        waits = f"started by group {', '.join(instance.groups)}" if instance.groups else ""
        waits = waits or "started by its group"
    return "; ".join(p for p in (sizes, addresses or "no network", waits) if p)


def summary_line(summary: Summary) -> str:
    """`Plan: 3 to create, 1 to change, 0 to remove; 1 network to create, 1 image upload
    (230MiB); 2 unchanged, 0 not in the spec`."""
    s = summary
    vms = f"{s.create} to create, {s.change} to change, {s.remove} to remove"
    vms += f", {s.start} to start" if s.start else ""
    total = s.networks_create + s.networks_remove
    networks = f"{total} network{'s' if total != 1 else ''}"
    if s.networks_create and s.networks_remove:
        networks += f" ({s.networks_create} to create, {s.networks_remove} to remove)"
    elif total:
        networks += " to create" if s.networks_create else " to remove"
    uploads = f"{s.uploads} image upload{'s' if s.uploads != 1 else ''}"
    known = [format_size(s.upload_bytes)] if s.uploads > s.upload_unknown else []
    known += [f"{s.upload_unknown} of size known once pulled"] if s.upload_unknown else []
    uploads += f" ({' + '.join(known)})" if known else ""
    rest = f"{s.unchanged} unchanged, {s.not_in_spec} not in the spec"
    if s.pending:
        rest += f", {s.pending} with changes pending a restart (up --restart)"
    return f"Plan: {vms}; {networks}, {uploads}; {rest}"
