"""How results look: rows for tables and -o json/yaml, the plan in colour, and outcomes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from vmfleet.api import VmOutcome
from vmfleet.api.types import MemberOutcome
from vmfleet.cli.output import OutputFormat, console, emit
from vmfleet.core.plan import Plan


def plain(value: Any) -> Any:
    """A result as plain data for JSON/YAML: dataclasses as dicts, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def plan_rows(plan: Plan, *, prune: bool) -> list[dict[str, object]]:
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


def has_changes(plan: Plan, *, prune: bool) -> bool:
    """`up` would create or change a VM (or, with `prune`, remove one)."""
    kinds = {"create", "change", "orphan"} if prune else {"create", "change"}
    return any(a.kind in kinds for a in plan.actions)


def show_plan(plan: Plan, *, prune: bool, output: OutputFormat) -> None:
    rows = plan_rows(plan, prune=prune)
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


def outcomes(results: Sequence[VmOutcome], output: OutputFormat) -> None:
    """One row per VM a command acted on (seconds rounded)."""
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


def member_rows(outcomes: Sequence[MemberOutcome]) -> list[dict[str, object]]:
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


def member_outcomes(outcomes: Sequence[MemberOutcome], output: OutputFormat) -> None:
    emit(
        member_rows(outcomes),
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
