"""Journaled steps and undoing them: every step that creates something on a host writes an
intent first and closes it after; `rollback`, `recover` and the volume sweeps undo them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

from vmfleet.core.expand import Instance
from vmfleet.drivers.domainxml import VolumeConfig
from vmfleet.drivers.libvirt import LibvirtHost
from vmfleet.drivers.metadata import parse_volume_name, volume_name
from vmfleet.engine.context import FleetContext
from vmfleet.errors import HypervisorError
from vmfleet.state.store import JournalEntry

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
    entry = ctx.store.intent(
        run=ctx.run_id, host=host, vm=vm, kind=kind, target=target, detail={"pool": pool}
    )
    try:
        action()
    except BaseException:
        ctx.store.finish(entry, status="failed")
        raise
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


def rollback(ctx: FleetContext, host_name: str, vm: str) -> None:
    """Undo a half-made VM: its domain (if ours) and every volume with its name."""
    host = ctx.host(host_name)
    info = host.get_domain(vm)
    if info is not None and info.owner is not None and info.owner.fleet == ctx.fleet:
        if info.active:
            host.destroy(vm)
        host.undefine(vm)
    remove_volumes(ctx, host, host_name, vm)


def volume_names(ctx: FleetContext, vm: str, instance: Instance | None = None) -> list[str]:
    """The pool volumes a VM has: root, seed and (if its spec is known) its data disks."""
    roles = ["root", "seed.iso"]
    if instance is not None:
        roles += [f"data-{n}" for n in range(len(instance.fields.data_disks))]
    return [volume_name(fleet=ctx.fleet, vm=vm, role=role) for role in roles]


def remove_volumes(
    ctx: FleetContext,
    host: LibvirtHost,
    host_name: str,
    vm: str,
    *,
    instance: Instance | None = None,
    extra: Iterable[str] = (),
) -> int:
    """Delete the VM's volumes by name (looked up one by one: no scan of the whole pool).

    `extra` may name any volumes (a domain's disks); only this fleet's, of this VM, go.
    """
    pool = ctx.host_specs()[host_name].pool
    removed = 0
    for name in dict.fromkeys([*volume_names(ctx, vm, instance), *extra]):
        parsed = parse_volume_name(name)
        if parsed and parsed[:2] == (ctx.fleet, vm) and host.delete_volume(pool, name):
            removed += 1
    return removed


def sweep_volumes(
    ctx: FleetContext, host: LibvirtHost, host_name: str, vms: Iterable[str] | None = None
) -> list[str]:
    """Delete every volume of this fleet's VMs (or of `vms`) left on a host: one pool scan."""
    pool = ctx.host_specs()[host_name].pool
    only = set(vms) if vms is not None else None
    removed = []
    for volume in host.list_volumes(pool):
        parsed = parse_volume_name(volume.name)
        if parsed and parsed[0] == ctx.fleet and (only is None or parsed[1] in only):
            host.delete_volume(pool, volume.name)
            removed.append(volume.name)
    return removed


def recover(ctx: FleetContext) -> list[str]:
    """Roll back steps a killed run left open; returns what was cleaned, for the user."""
    cleaned: list[str] = []
    for entry in ctx.store.open_entries():
        if entry.kind in ("migration", "evacuation"):
            cleaned += _settle_move(ctx, entry)
            continue
        try:
            host = ctx.host(entry.host)
        except HypervisorError:
            continue  # unreachable now: keep the entry for a later run
        pool = str(entry.detail.get("pool", "default"))
        if entry.kind == "volume":
            with contextlib.suppress(HypervisorError):
                if host.get_volume(pool, entry.target) is not None:
                    host.delete_volume(pool, entry.target)
                    cleaned.append(f"rolled back volume {entry.target} on {entry.host}")
        elif entry.kind == "domain":
            info = host.get_domain(entry.target)
            if info is not None and info.owner is not None and info.owner.fleet == ctx.fleet:
                if info.active:
                    host.destroy(entry.target)
                host.undefine(entry.target)
                remove_volumes(ctx, host, entry.host, entry.target)
                cleaned.append(f"rolled back domain {entry.target} on {entry.host}")
        ctx.store.finish(entry.id, status="undone")
    return cleaned


def _settle_move(ctx: FleetContext, entry: JournalEntry) -> list[str]:
    """A move finishes or rolls back in its own module (kept open while a host is down)."""
    from vmfleet.engine import evacuate, migrate  # they build on provision

    settle = migrate.recover if entry.kind == "migration" else evacuate.recover
    done = settle(ctx, entry)
    return [] if done is None else [done]
