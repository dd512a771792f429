"""Evacuating a host that is down: its VMs are made again elsewhere, the stale copies go
when it returns.

Which VMs were on the host comes from the journal: the host each VM was last created on or
moved to. Those the spec still wants and no reachable host has are created anew (image,
cloud-init, the same MACs, IPs and host keys) on the hosts placement picks; the down host
is cordoned first, so nothing returns there. Local disk contents are lost (only shared
storage would keep them); the CLI says so.

Each evacuated VM leaves a journal entry (kind `evacuation`, host = the down host) open.
`recover`, at the start of every `up`/`down`, removes the stale copy (found by its
ownership metadata) once the host answers again, and closes the entry: from then on one
copy of the VM exists, the new one.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from vmfleet.core.expand import Instance
from vmfleet.engine import hosts as engine_hosts
from vmfleet.engine import migrate, provision
from vmfleet.engine.apply import observe
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, UsageError
from vmfleet.state.store import JournalEntry

Progress = Callable[[str, str, str], None]
KIND = "evacuation"
# where each VM was last put: created on (journal host), or moved to (the entry's "to")
HOMES = {"vm": "host", "domain": "host", "migration": "to"}


@dataclass
class Evacuation:
    """What an evacuation did: VM -> new host, VMs left (with reasons), failures."""

    moved: dict[str, str] = field(default_factory=dict)
    stuck: dict[str, tuple[str, ...]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def evacuate(ctx: FleetContext, host: str, progress: Progress, *, workers: int = 4) -> Evacuation:
    """Recreate elsewhere the VMs of `host`, which must be down (see the module docstring)."""
    if host not in ctx.host_specs():
        raise UsageError(f"no host {host} in fleet {ctx.fleet}")
    seen = observe(ctx)
    if host not in seen.unreachable:
        raise UsageError(f"host {host} answers: move its VMs live with vmfleet drain {host}")
    ctx.store.cordon(host)
    found = {o.name for o in seen.vms}
    homes = ctx.store.last_hosts(HOMES)
    lost = [i for i in ctx.instances() if i.name not in found and homes.get(i.name) == host]
    report = Evacuation()
    if not lost:
        return report
    placed = engine_hosts.placement(ctx, {o.name: o.host for o in seen.vms})
    jobs = []
    for instance in lost:
        target = placed.hosts.get(instance.name)
        if target is None or target == host:
            report.stuck[instance.name] = placed.failures.get(instance.name) or (
                f"pinned to {host} (host: in the spec)",
            )
            continue
        jobs.append((instance, target))
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs) or 1))) as pool:
        futures = {
            pool.submit(_recreate, ctx, inst, host, target, progress): (inst, target)
            for inst, target in jobs
        }
        for future in as_completed(futures):
            instance, target = futures[future]
            try:
                future.result()
            except FleetError as error:
                report.failed[instance.name] = str(error)
                progress(instance.name, "failed", str(error))
                continue
            report.moved[instance.name] = target
    return report


def _recreate(
    ctx: FleetContext, instance: Instance, down: str, target: str, progress: Progress
) -> None:
    entry = ctx.store.intent(
        run=ctx.run_id,
        host=down,
        vm=instance.name,
        kind=KIND,
        target=instance.name,
        detail={"to": target},
    )
    try:
        provision.create(ctx, instance, target, progress)
    except BaseException:
        ctx.store.finish(entry, status="failed")
        raise
    progress(instance.name, "done", f"recreated on {target}")
    ctx.store.event(
        kind="evacuated", vm=instance.name, message=f"recreated on {target}, {down} down"
    )


def recover(ctx: FleetContext, entry: JournalEntry) -> str | None:
    """Remove the stale copy on a host that came back; None (entry kept) while it is down."""
    try:
        migrate.remove_copy(ctx, entry.host, entry.vm)  # the copy there is found by metadata
    except FleetError:
        return None  # unreachable still, or the removal failed: kept for the next run
    ctx.store.finish(entry.id)
    target = entry.detail.get("to", "another host")
    return f"removed the stale copy of {entry.vm} on {entry.host} (evacuated to {target})"
