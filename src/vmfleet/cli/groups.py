"""`vmfleet power` and `vmfleet status`: group power (boot order gated on readiness) and the
group tree with its conditions. Also the step of `up` that applies groups' `power_state`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Annotated

import typer

from vmfleet.cli.common import FleetFile, Output, StateOpt, WaitOpt, app, fleet_context
from vmfleet.cli.output import OutputFormat, console, emit, err_console
from vmfleet.cli.progress import VmProgress
from vmfleet.core import groups as core
from vmfleet.engine import groups as engine_groups
from vmfleet.engine.apply import Outcome
from vmfleet.engine.context import FleetContext
from vmfleet.errors import UsageError

VERBS = {
    "on": core.POWERED_ON,
    "off": core.POWERED_OFF,
    "suspend": core.SUSPENDED,
    "resume": "Resumed",
}


def _time(at: float | None) -> str | None:
    if at is None:
        return None
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _outcome_rows(outcomes: list[engine_groups.MemberOutcome]) -> list[dict[str, object]]:
    return [
        {
            "vm": o.vm,
            "group": o.group,
            "action": o.action,
            "ok": o.ok,
            "tier": o.tier,
            "detail": o.detail,
            "started_at": o.started_at,
            "ready_at": o.ready_at,
        }
        for o in outcomes
    ]


def _emit_outcomes(outcomes: list[engine_groups.MemberOutcome], output: OutputFormat) -> None:
    emit(
        _outcome_rows(outcomes),
        fmt=output,
        columns=[
            ("vm", "VM"),
            ("group", "Group"),
            ("action", "Action"),
            ("tier", "Tier"),
            ("ok", "OK"),
            ("detail", "Detail"),
        ],
    )


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
    if len(args) == 3 and args[0] in VERBS:
        verb: str | None = args[0]
        file, group = args[1], args[2]
    elif len(args) == 2 and sync:
        verb, (file, group) = None, args
    else:
        raise UsageError(
            "usage: vmfleet power on|off|suspend|resume FILE GROUP, "
            "or vmfleet power FILE GROUP --sync"
        )
    with fleet_context(Path(file), state, lock=True, what=f"power {group}", wait=wait) as ctx:
        if group not in ctx.loaded.spec.groups:
            raise UsageError(f"no group {group!r} in fleet {ctx.fleet}")
        if verb is None:
            wanted, _record = core.desired_state(ctx.loaded.spec, group, engine_groups.records(ctx))
            if wanted is None:
                raise UsageError(f"group {group} has no power state to sync to; name a verb")
        else:
            wanted = VERBS[verb]
        vms = core.vms_of(ctx.loaded.spec, ctx.instances(), group)
        try:
            with VmProgress(f"power {group} {wanted}", vms) as progress:
                outcomes = engine_groups.power(ctx, group, wanted, progress=progress)
        except engine_groups.GroupPowerError as error:
            _emit_outcomes(error.outcomes, output)
            raise
        _emit_outcomes(outcomes, output)


def apply_after_up(ctx: FleetContext, *, created: Collection[str], output: OutputFormat) -> None:
    """The groups' step of `up`: apply each group's `power_state` (new members of a
    powered-on group are started tier by tier). Prints what it did."""
    if not core.governing(ctx.loaded.spec):
        return
    vms = sorted(engine_groups.held(ctx))
    try:
        with VmProgress(f"groups of {ctx.fleet}", vms) as progress:
            outcomes = engine_groups.apply_spec(ctx, created=created, progress=progress)
    except engine_groups.GroupPowerError as error:
        if output is OutputFormat.table:
            _emit_outcomes(error.outcomes, output)
        raise
    if outcomes and output is OutputFormat.table:
        _emit_outcomes(outcomes, output)


def held(ctx: FleetContext) -> set[str]:
    """VMs `up` must leave to their group's power state."""
    return engine_groups.held(ctx)


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
        str | None, typer.Argument(help="Only this group and its nested ones.")
    ] = None,
    state: StateOpt = None,
    output: Output = OutputFormat.table,
) -> None:
    """The group tree: each member's GroupLinked, PowerStateSynced and PlacementReady, each
    group's Ready and when its power state last changed."""
    with fleet_context(file, state, lock=False, what="status", readonly=True) as ctx:
        spec = ctx.loaded.spec
        if group is not None and group not in spec.groups:
            raise UsageError(f"no group {group!r} in fleet {ctx.fleet}")
        found = engine_groups.group_status(ctx)
    by_name = {g.name: g for g in found}
    if group is not None:
        keep = {group}
        for g in found:  # parents come before children
            if g.parent in keep:
                keep.add(g.name)
        found = [g for g in found if g.name in keep]
    data = [_group_json(g) for g in found]
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
        console.print(f"fleet {ctx.fleet} has no groups")
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


def created_in(results: Sequence[Outcome]) -> set[str]:
    """Names of VMs an `up` run created."""
    return {r.vm for r in results if r.action == "create" and r.ok}
