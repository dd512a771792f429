"""Journaled steps and undoing them: every step that creates something on a host writes an
intent first and closes it after; `rollback`, `recover` and the volume sweeps undo them.

Failure policy: an entry is closed as `undone` only after its cleanup really succeeded. A
cleanup that fails leaves the entry open (the next `up`/`down` retries it) and is recorded
as a `cleanup-failed` event and reported; nothing is swallowed.

Ownership: a volume is removed only when its name is one vmfleet builds for this fleet and
VM (`drivers.names`, unambiguous) and it is either one we would create for that VM or listed
as a disk by the VM's domain, which carries our metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from vmfleet.core.expand import Instance
from vmfleet.drivers import names
from vmfleet.drivers.domainxml import DomainInfo, VolumeConfig, VolumeSource, parse_domain
from vmfleet.engine import hostlocks
from vmfleet.engine.context import FleetContext
from vmfleet.engine.provision.base_images import upload_lock
from vmfleet.errors import FleetError, HostUnreachableError
from vmfleet.state.store import JournalEntry

if TYPE_CHECKING:
    from vmfleet.drivers.libvirt import LibvirtHost  # types only: libvirt loads on use

Progress = Callable[[str, str, str], None]  # (vm, phase, detail)


def journaled(
    ctx: FleetContext,
    host: str,
    vm: str,
    kind: str,
    target: str,
    pool: str,
    action: Callable[[], object],
) -> None:
    """Run `action` between an intent and its close. A failed step stays open: it may have
    half-happened (a volume created, its upload failed), so the rollback or `recover` that
    cleans it up is what closes it."""
    entry = ctx.store.intent(
        run=ctx.run_id, host=host, vm=vm, kind=kind, target=target, detail={"pool": pool}
    )
    action()
    ctx.store.finish(entry)


def journaled_volume(
    ctx: FleetContext, host_name: str, vm: str, pool: str, config: VolumeConfig
) -> None:
    """Create a volume from its config, journaled so a killed run can roll it back."""
    host = ctx.host(host_name)
    journaled(
        ctx,
        host_name,
        vm,
        "volume",
        config.name,
        pool,
        lambda: host.create_volume(pool, config.to_xml()),
    )


def rollback(ctx: FleetContext, host_name: str, vm: str, *, data_disks: int = 0) -> None:
    """Undo a half-made VM: its domain (if ours), its root, seed and `data_disks` data disks,
    and any other disk of ours its domain lists. Raises when something could not be removed.
    """
    host = ctx.host(host_name)
    info = host.get_domain(vm)
    attached: list[str] = []
    if info is not None and info.owner is not None and info.owner.fleet == ctx.fleet:
        attached = attached_volumes(parse_domain(info.xml))
        if info.active:
            host.destroy(vm)
        host.undefine(vm)
    remove_volumes(ctx, host, host_name, vm, data_disks=data_disks, extra=attached)


def attached_volumes(domain: DomainInfo) -> list[str]:
    """The volume (or file) names of every disk a domain lists."""
    return [
        d.source.volume if isinstance(d.source, VolumeSource) else Path(d.source.path).name
        for d in domain.disks
        if d.source is not None
    ]


def volume_names(
    ctx: FleetContext, vm: str, instance: Instance | None = None, *, data_disks: int = 0
) -> list[str]:
    """The pool volumes a VM has: root, seed and its data disks (from its spec when known)."""
    count = len(instance.fields.data_disks) if instance is not None else data_disks
    roles = ["root", "seed.iso", *(f"data-{n}" for n in range(count))]
    return [names.volume(fleet=ctx.fleet, vm=vm, role=role) for role in roles]


def remove_volumes(
    ctx: FleetContext,
    host: LibvirtHost,
    host_name: str,
    vm: str,
    *,
    instance: Instance | None = None,
    data_disks: int = 0,
    extra: Iterable[str] = (),
) -> int:
    """Delete the VM's volumes by name (looked up one by one: no scan of the whole pool).

    `extra` names the disks the VM's owned domain lists; of those only names built for this
    fleet's VM go (including the 0.1.0 form, which only the domain's own listing can vouch for).
    """
    pool = ctx.host_specs()[host_name].pool
    removed = 0
    built = volume_names(ctx, vm, instance, data_disks=data_disks)
    listed = [
        n
        for n in extra
        if _named_for(ctx.fleet, vm, n) or names.is_legacy_volume(n, fleet=ctx.fleet, vm=vm)
    ]
    for name in dict.fromkeys([*built, *listed]):
        if _named_for(ctx.fleet, vm, name) or name in listed:
            removed += host.delete_volume(pool, name)
    return removed


def _named_for(fleet: str, vm: str, name: str) -> bool:
    parsed = names.parse_volume(name)
    return parsed is not None and parsed[:2] == (fleet, vm)


def sweep_volumes(
    ctx: FleetContext, host: LibvirtHost, host_name: str, vms: Iterable[str]
) -> list[str]:
    """Delete every volume named for one of `vms` of this fleet left on a host: one pool scan
    (catches a data disk whose VM's spec changed). The names are exact (`names.volume`)."""
    pool = ctx.host_specs()[host_name].pool
    only = set(vms)
    removed = []
    for volume in host.list_volumes(pool):
        parsed = names.parse_volume(volume.name)
        if parsed and parsed[0] == ctx.fleet and parsed[1] in only:
            host.delete_volume(pool, volume.name)
            removed.append(volume.name)
    return removed


def recover(ctx: FleetContext) -> list[str]:
    """Roll back steps a killed or failed run left open; returns one line per entry for the
    user: what was cleaned, or why an entry stays open for the next run."""
    report = [
        f"removed {p.name}, a temporary file of an interrupted run" for p in ctx.store.sweep_tmp()
    ]
    for entry in ctx.store.open_entries():
        if entry.kind in ("migration", "evacuation"):
            report += _settle_move(ctx, entry)
            continue
        what = f"{entry.kind} {entry.target} on {entry.host}"
        try:
            if _undo(ctx, entry.host, entry.kind, entry.target, entry.detail):
                report.append(f"rolled back {what} left by an interrupted run")
        except HostUnreachableError:
            continue  # unreachable now: keep the entry for a later run
        except FleetError as error:
            ctx.store.event(kind="cleanup-failed", vm=entry.vm, message=f"{what}: {error}")
            report.append(f"could not roll back {what}: {error} (kept for the next run)")
            continue
        ctx.store.finish(entry.id, status="undone")
    return report


def _undo(
    ctx: FleetContext, host_name: str, kind: str, target: str, detail: dict[str, object]
) -> bool:
    """Undo one journal entry; True when something was removed. Raises when it failed."""
    host = ctx.host(host_name)
    pool = str(detail.get("pool", "default"))
    if kind == "volume" and names.base_image_of(target) is not None:
        return _undo_base_upload(ctx, host, host_name, pool, target)
    if kind == "volume":
        if host.get_volume(pool, target) is None:
            return False
        return host.delete_volume(pool, target)
    if kind in ("domain", "vm"):
        info = host.get_domain(target)
        existed = info is not None
        data = detail.get("data_disks", 0)
        rollback(ctx, host_name, target, data_disks=data if isinstance(data, int) else 0)
        return existed
    return False


def _undo_base_upload(
    ctx: FleetContext, host: LibvirtHost, host_name: str, pool: str, base: str
) -> bool:
    """A base volume whose upload an interrupted run began is shared with other runs: it goes
    only when its upload lock was still held by that dead run (half sent), not when the
    upload finished, or another run sent it again meanwhile (others may use it by now)."""
    with upload_lock(ctx, host, host_name, pool, base) as broke:
        if not hostlocks.holds_locks(host):
            broke = True  # no lock there: whatever the run left is half made
        return broke and host.get_volume(pool, base) is not None and host.delete_volume(pool, base)


def close_open(ctx: FleetContext, vm: str, *, status: str = "undone") -> None:
    """Close this run's open entries for one VM (after its rollback succeeded)."""
    for entry in ctx.store.open_entries():
        if entry.run == ctx.run_id and entry.vm == vm:
            ctx.store.finish(entry.id, status=status)


def _settle_move(ctx: FleetContext, entry: JournalEntry) -> list[str]:
    """A move finishes or rolls back in its own module (kept open while a host is down)."""
    from vmfleet.engine import evacuate, migrate  # they build on provision

    settle = migrate.recover if entry.kind == "migration" else evacuate.recover
    done = settle(ctx, entry)
    return [] if done is None else [done]
