"""Snapshots: list, revert and delete, read back from libvirt."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, UsageError

if TYPE_CHECKING:
    pass

from vmfleet.engine.snapshots.create import _record
from vmfleet.engine.snapshots.members import (
    DEFAULT_TIMEOUT,
    Member,
    MemberResult,
    note,
)

# --- list, revert, delete ---------------------------------------------------------------------


def listing(ctx: FleetContext, chosen: Sequence[Member]) -> list[dict[str, object]]:
    """A row per snapshot per VM: name, time, type, VM state then, parent, size, consistency."""
    rows: list[dict[str, object]] = []
    for member in chosen:
        for snap in ctx.host(member.host).list_snapshots(member.vm):
            state, consistency = note(snap)
            rows.append(
                {
                    "vm": member.vm,
                    "name": snap.name,
                    "time": snap.created.isoformat(timespec="seconds"),
                    "type": snap.kind + ("+memory" if snap.memory else ""),
                    "vm_state": state or snap.state.value,
                    "parent": snap.parent,
                    "current": snap.current,
                    "size_bytes": snap.size_bytes,
                    "consistency": consistency,
                    "files": list(snap.files),
                }
            )
    return rows


def revert(
    ctx: FleetContext,
    chosen: Sequence[Member],
    name: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int = 8,
) -> list[MemberResult]:
    """Revert each member to its snapshot `name`, in parallel, each back to the power state
    it had then; a guest frozen for the snapshot (RAM included) is thawed again."""

    def one(member: Member) -> MemberResult:
        t0 = time.monotonic()
        host = ctx.host(member.host)
        try:
            listed = host.list_snapshots(member.vm)
            snap = next((s for s in listed if s.name == name), None)
            if snap is None:
                raise UsageError(f"vm {member.vm} has no snapshot {name!r}")
            if snap.kind == "internal" and any(s.kind == "external" for s in listed):
                raise UsageError(
                    f"vm {member.vm}: cannot revert to internal snapshot {name!r} while its "
                    "disks are external overlays; delete the external snapshots first"
                )
            from vmfleet.drivers.libvirt import DomainState  # libvirt loads on use

            noted, consistency = note(snap)
            state = DomainState(noted) if noted else snap.state
            host.snapshot_revert(member.vm, name, state=state, timeout=timeout)
            detail = f"reverted ({state.value})"
            if consistency == "application" and snap.memory and state is DomainState.RUNNING:
                host.fsthaw(member.vm, timeout=30.0)
                detail += ", thawed"
        except FleetError as err:
            return MemberResult(member.vm, False, str(err), seconds=time.monotonic() - t0)
        return MemberResult(member.vm, True, detail, snap.kind, seconds=time.monotonic() - t0)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(chosen)))) as pool:
        results = list(pool.map(one, chosen))
    _record(ctx, name, "revert", results)
    return results


def delete(
    ctx: FleetContext,
    chosen: Sequence[Member],
    name: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int = 8,
) -> list[MemberResult]:
    """Delete snapshot `name` of each member and free its space (overlays merged, removed)."""

    def one(member: Member) -> MemberResult:
        t0 = time.monotonic()
        try:
            removed = ctx.host(member.host).snapshot_delete(member.vm, name, timeout=timeout)
        except FleetError as err:
            return MemberResult(member.vm, False, str(err), seconds=time.monotonic() - t0)
        detail = "deleted" + (f" ({len(removed)} overlay file(s) removed)" if removed else "")
        return MemberResult(member.vm, True, detail, seconds=time.monotonic() - t0)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(chosen)))) as pool:
        results = list(pool.map(one, chosen))
    _record(ctx, name, "delete", results)
    return results
