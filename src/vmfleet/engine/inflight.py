"""Moves in flight, as any process sees them: read from the journal and the source host.

A move (`engine.migrate`) keeps one open `migration` entry from before the destination is
touched until the source copy is gone; it holds the destination, the moving process's pid
and the phase that process reached. `journaled` reads those entries (a read-only store
sees a writer's changes); `with_transfer` adds what the source's libvirt reports of a live
move's job (memory and disk left, rate). An entry whose process is gone is `interrupted`:
the next `up`, `down` or move command finishes or rolls it back. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vmfleet.engine.context import FleetContext
from vmfleet.engine.hostlocks import process_alive
from vmfleet.engine.migrate import KIND
from vmfleet.errors import FleetError
from vmfleet.state.store import Store


@dataclass(frozen=True, slots=True)
class MigrationInFlight:
    """One VM being moved. `phase` is the moving run's step (prepare, migrate, stop, copy,
    define, start, fallback, cleanup; `starting` before the first); `transfer` and the
    byte counts are the source's libvirt job (setup, disks, memory, memory pass N), None
    when no job runs (an offline move, or between phases). `rate` in bytes per second."""

    vm: str
    source: str
    target: str
    mode: str  # live or offline
    phase: str
    started: float  # epoch seconds
    interrupted: bool  # its process is gone: the next up, down or move command settles it
    transfer: str | None = None
    memory_total: int | None = None
    memory_remaining: int | None = None
    disk_total: int | None = None
    disk_remaining: int | None = None
    rate: int | None = None


def journaled(store: Store) -> dict[str, MigrationInFlight]:
    """VM -> its move, for every open migration entry (no host is asked)."""
    out: dict[str, MigrationInFlight] = {}
    for entry in store.open_entries():
        if entry.kind != KIND:
            continue
        pid = entry.detail.get("pid")
        out[entry.vm] = MigrationInFlight(
            vm=entry.vm,
            source=entry.host,
            target=str(entry.detail.get("to", "")),
            mode="offline" if entry.detail.get("offline") else "live",
            phase=str(entry.detail.get("phase", "starting")),
            started=entry.started,
            interrupted=isinstance(pid, int) and not process_alive(pid),
        )
    return out


def with_transfer(ctx: FleetContext, move: MigrationInFlight) -> MigrationInFlight:
    """The move with its source's migration job, when one runs and the host answers."""
    if move.mode != "live":
        return move
    try:
        job = ctx.host(move.source).migration_job(move.vm)
    except FleetError:
        return move
    if job is None:
        return move
    return replace(
        move,
        transfer=job.phase,
        memory_total=job.memory_total,
        memory_remaining=job.memory_remaining,
        disk_total=job.disk_total,
        disk_remaining=job.disk_remaining,
        rate=job.rate,
    )


def by_host(moves: dict[str, MigrationInFlight]) -> dict[str, dict[str, list[str]]]:
    """Host -> {"in": VMs moving there, "out": VMs moving away}, for hosts with any."""
    out: dict[str, dict[str, list[str]]] = {}
    for vm, move in sorted(moves.items()):
        out.setdefault(move.source, {"in": [], "out": []})["out"].append(vm)
        out.setdefault(move.target, {"in": [], "out": []})["in"].append(vm)
    return out
