"""How results look: rows for tables and -o json/yaml, and outcomes (the plan: planview)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vmfleet.cli.output import OutputFormat, emit

if TYPE_CHECKING:
    from vmfleet.api import VmInfo, VmOutcome
    from vmfleet.api.types import MemberOutcome


def plain(value: Any) -> Any:
    """A result as plain data for JSON/YAML: dataclasses as dicts, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


MiB = 1 << 20


def vm_state(vm: VmInfo) -> str:
    """The State column: the VM's state, then a move in flight or its pin drift."""
    move, state = vm.migration, vm.state
    if move is not None and move.interrupted:
        return (
            f"{state}, migration → {move.target} interrupted (the next up/down/migrate settles it)"
        )
    if move is not None:
        left = [
            f"{what} {remaining // MiB} MiB left"
            for what, remaining, total in (
                ("memory", move.memory_remaining, move.memory_total),
                ("disk", move.disk_remaining, move.disk_total),
            )
            if remaining is not None and total
        ]
        phase = move.transfer or move.phase
        return f"{state}, migrating → {move.target} ({', '.join([phase, *left])})"
    if vm.drift is not None:
        return f"{state}, drift: pinned to {vm.drift.pinned}"
    return state


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
