"""How a plan is shown: a line per VM (and per host step) with its changes and steps, or
rows for `-o json|yaml` where every VM carries its steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfleet.cli.output import OutputFormat, console, emit
from vmfleet.spec.units import format_size

if TYPE_CHECKING:
    from vmfleet.core.plan import Plan, Step


def plan_rows(plan: Plan) -> list[dict[str, object]]:
    """One row per VM (JSON: with its steps) and one per host step."""
    rows: list[dict[str, object]] = []
    for action in plan.actions:
        if action.kind == "orphan":
            what = "remove" if action.steps else "orphan (kept; --prune removes)"
        elif action.kind == "unchanged" and action.pending:
            what = "pending"
        elif action.kind == "unchanged" and action.steps:
            what = "start"
        else:
            what = action.kind
        rows.append(
            {
                "vm": action.vm,
                "action": what,
                "host": action.host,
                "changes": [
                    f"{c.field}: {_size(c.old)} -> {_size(c.new)}"
                    + ("" if c.live else " (next boot)")
                    if c.old is not None
                    else c.field + ("" if c.live else " (next boot)")
                    for c in action.changes
                ],
                "pending": [c.field for c in action.pending],
                "steps": [_step_row(s) for s in action.steps],
            }
        )
    for step in plan.host_steps:
        rows.append({"vm": None, "action": step.kind, "host": step.host, "target": step.target})
    return rows


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


def show_plan(plan: Plan, *, output: OutputFormat) -> None:
    """The plan as coloured lines (one per VM and host step) and a count, or as rows."""
    rows = plan_rows(plan)
    if output is not OutputFormat.table:
        emit(rows, fmt=output, columns=[])
        return
    colours = {"create": "green", "change": "yellow", "unchanged": "dim", "remove": "red"}
    signs = {"create": "+", "change": "~", "remove": "-", "unchanged": "=", "start": ">"}
    for row in rows:
        action = str(row["action"])
        if row["vm"] is None:
            console.print(
                f"[cyan]* host {row['host']}: {action} {row['target']}[/]", highlight=False
            )
            continue
        colour = colours.get(action.split(" ")[0], "magenta")
        sign = signs.get(action.split(" ")[0], "!")
        changes = "; ".join(row["changes"])  # type: ignore[arg-type]
        steps = [str(s["step"]) for s in row["steps"]]  # type: ignore[attr-defined]
        console.print(
            f"[{colour}]{sign} {row['vm']:<24} {action:<12}[/] on {row['host']}"
            + (f"  {changes}" if changes else "")
            + (f"  [dim]steps: {', '.join(steps)}[/]" if steps and action != "create" else ""),
            highlight=False,
        )
    counts = {k: len(plan.of(k)) for k in ("create", "change", "unchanged", "orphan")}
    pending = len(plan.pending)
    console.print(
        f"plan: {counts['create']} to create, {counts['change']} to change, "
        f"{counts['unchanged']} unchanged, {counts['orphan']} not in the spec"
        + (f", {pending} with changes pending a restart (up --restart)" if pending else "")
    )
