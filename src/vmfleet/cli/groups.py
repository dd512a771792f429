"""`vmfleet power` and `vmfleet status`: group power (boot order gated on readiness) and the
group tree with its conditions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vmfleet.cli import completion, render
from vmfleet.cli.cluster import disks_text
from vmfleet.cli.common import FleetFile, Output, StateOpt, WaitOpt, app, open_fleet
from vmfleet.cli.output import OutputFormat, console, emit, err_console
from vmfleet.errors import UsageError

if TYPE_CHECKING:
    from vmfleet.core import groups as core


def _time(at: float | None) -> str | None:
    if at is None:
        return None
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@app.command()
def power(
    args: Annotated[
        list[str],
        typer.Argument(
            help="[on|off|suspend|resume] FILE GROUP. Without a verb (with --sync): bring "
            "every member back to the group's wanted state.",
            show_default=False,
        ),
    ],
    sync: Annotated[
        bool,
        typer.Option(
            "--sync", help="Correct drift: bring every member to the group's wanted state."
        ),
    ] = False,
    state: StateOpt = None,
    wait: WaitOpt = 0.0,
    output: Output = OutputFormat.table,
) -> None:
    """Power a group: `on` walks its boot order tier by tier (each tier's readiness gate and
    delay before the next), `off` stops tiers in reverse (graceful, then forced), `suspend`
    and `resume` act on all members at once. Exits 1 if a gate or a member failed."""
    from vmfleet.api.day2 import POWER_VERBS  # the engine loads with the command
    from vmfleet.api.types import GroupPowerError

    if len(args) == 3 and args[0] in POWER_VERBS:
        verb: str | None = args[0]
        file, group = args[1], args[2]
    elif len(args) == 2 and sync:
        verb, (file, group) = None, args
    else:
        raise UsageError(
            "usage: vmfleet power on|off|suspend|resume FILE GROUP, "
            "or vmfleet power FILE GROUP --sync"
        )
    failure: GroupPowerError | None = None
    with open_fleet(Path(file), state, wait=wait) as fleet:
        try:
            outcomes = fleet.power(group, verb)
        except GroupPowerError as error:
            failure, outcomes = error, tuple(error.outcomes)
    render.member_outcomes(outcomes, output)
    if failure is not None:
        raise failure


def _condition(c: core.Condition) -> dict[str, object]:
    return {
        "type": c.type,
        "status": c.status,
        "reason": c.reason,
        "message": c.message,
        "lastTransitionTime": _time(c.time),
    }


def _group_json(g: core.GroupStatus) -> dict[str, object]:
    return {
        "name": g.name,
        "parent": g.parent,
        "powerState": g.power_state,
        "lastUpdatedPowerStateTime": _time(g.last_updated_power_state_time),
        "conditions": [_condition(c) for c in g.conditions],
        "members": [
            {"name": m.name, "kind": m.kind, "conditions": [_condition(c) for c in m.conditions]}
            for m in g.members
        ],
    }


def _depth(g: core.GroupStatus, by_name: dict[str, core.GroupStatus]) -> int:
    depth, parent, seen = 0, g.parent, {g.name}
    while parent is not None and parent in by_name and parent not in seen:
        seen.add(parent)
        depth += 1
        parent = by_name[parent].parent
    return depth


@app.command()
def status(
    file: FleetFile,
    group: Annotated[
        str | None,
        typer.Argument(
            help="Only this group and its nested ones.", autocompletion=completion.names
        ),
    ] = None,
    state: StateOpt = None,
    output: Output = OutputFormat.table,
) -> None:
    """Without GROUP, every VM and its state first (as `vagrant status`: a migration in
    flight and a VM off its `host:` pin show there); then the group tree: each member's
    GroupLinked, PowerStateSynced and PlacementReady, each group's Ready and when its power
    state last changed. JSON and YAML: `{"vms": [...], "groups": [...]}`, the VMs as
    `list -o json` has them (with GROUP, that group's VMs)."""
    with open_fleet(file, state, run_log=False) as fleet:
        found = fleet.status(group)
        vms = fleet.list()
    if group is not None:
        members = {m.name for g in found for m in g.members if m.kind == "VirtualMachine"}
        vms = tuple(vm for vm in vms if vm.name in members)
    disks = {vm.name: disks_text(vm.ha) for vm in vms if vm.ha}
    if vms and group is None and output is OutputFormat.table:
        emit(
            [
                {**render.plain(vm), "state": render.vm_state(vm), "disks": disks.get(vm.name)}
                for vm in vms
            ],
            fmt=output,
            title=f"fleet {fleet.name}",
            columns=[
                ("name", "VM"),
                ("state", "State"),
                ("host", "Host"),
                ("ip", "IP"),
                *([("disks", "HA disks")] if disks else []),
            ],
        )
    by_name = {g.name: g for g in found}
    data = {"vms": render.plain(vms), "groups": [_group_json(g) for g in found]}
    rows: list[dict[str, object]] = []
    for g in found:
        indent = "  " * _depth(g, by_name)
        ready = g.conditions[0]
        rows.append(
            {
                "name": f"{indent}{g.name}",
                "kind": "group",
                "power": g.power_state or "-",
                "linked": "",
                "synced": "",
                "placement": "",
                "ready": ready.status
                if ready.status == "True"
                else f"False: {ready.message.split(':')[0]}",
                "updated": _time(g.last_updated_power_state_time) or "-",
            }
        )
        for m in g.members:
            c = {x.type: x for x in m.conditions}

            def show(kind: str, conds: dict[str, core.Condition] = c) -> str:
                x = conds.get(kind)
                return (
                    "" if x is None else (x.status if x.status == "True" else f"False/{x.reason}")
                )

            rows.append(
                {
                    "name": f"{indent}  {m.name}",
                    "kind": "vm" if m.kind == "VirtualMachine" else "group",
                    "power": "",
                    "linked": show("GroupLinked"),
                    "synced": show("PowerStateSynced") or show("Ready"),
                    "placement": show("PlacementReady"),
                    "ready": next((x.message for x in m.conditions if x.status != "True"), ""),
                    "updated": "",
                }
            )
    if not found and output is OutputFormat.table:
        console.print(f"fleet {fleet.name} has no groups")
        return
    emit(
        rows,
        fmt=output,
        data=data,
        columns=[
            ("name", "Group / member"),
            ("kind", "Kind"),
            ("power", "Power state"),
            ("updated", "Power state set"),
            ("linked", "GroupLinked"),
            ("synced", "PowerStateSynced"),
            ("placement", "PlacementReady"),
            ("ready", "Ready / message"),
        ],
    )
    if any(g.conditions[0].status != "True" for g in found) and output is OutputFormat.table:
        err_console.print("some groups are not ready (vmfleet power FILE GROUP --sync)")
