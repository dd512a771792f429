"""Making one VM exist: base image → root disk (linked clone or copy, grown) → data disks →
seed ISO → define → start, each step journaled; a failure rolls the VM back.
"""

from __future__ import annotations

import tempfile

from vmfleet.core.expand import Instance
from vmfleet.drivers import names
from vmfleet.drivers.domainxml import BackingStore, VolumeConfig
from vmfleet.engine.context import FleetContext
from vmfleet.engine.provision.base_images import ensure_base
from vmfleet.engine.provision.definition import domain_config, existing_disks
from vmfleet.engine.provision.journal import (
    Progress,
    close_open,
    journaled,
    journaled_volume,
    remove_volumes,
    rollback,
)
from vmfleet.engine.provision.networks import ensure_networks
from vmfleet.engine.provision.ports import Access, access, record_leases
from vmfleet.engine.provision.seed import seed_iso
from vmfleet.errors import FleetError


def create(
    ctx: FleetContext, instance: Instance, host_name: str, progress: Progress, *, start: bool = True
) -> Access:
    """Make one VM exist and (unless `start` is False: a group starts it) start it; returns
    how to reach it. Idempotent after a crash.

    On failure everything made for this VM so far (data disks too) is removed again before
    the error goes on. A VM-wide journal entry stays open until the VM is defined and started
    or its rollback really succeeded; a failed rollback is noted on the error, recorded as an
    event and retried by the next run's `recover`.
    """
    vm = instance.name
    pool = ctx.host_specs()[host_name].pool
    data_disks = len(instance.fields.data_disks)
    entry = ctx.store.intent(
        run=ctx.run_id,
        host=host_name,
        vm=vm,
        kind="vm",
        target=vm,
        detail={"pool": pool, "data_disks": data_disks},
    )
    try:
        reach = _create(ctx, instance, host_name, progress, start=start, entry=entry)
    except BaseException as error:
        try:
            rollback(ctx, host_name, vm, data_disks=data_disks)
        except FleetError as cleanup:
            message = f"rollback of {vm} on {host_name} failed: {cleanup}; the next run retries it"
            ctx.store.event(kind="cleanup-failed", vm=vm, message=message)
            error.add_note(message)
        else:
            close_open(ctx, vm)
        raise
    return reach


def add_data_disk(ctx: FleetContext, instance: Instance, host_name: str, n: int) -> None:
    """Create the VM's data disk `data-n` (journaled) as the spec sizes it."""
    data = instance.fields.data_disks[n]
    name = names.volume(fleet=ctx.fleet, vm=instance.name, role=f"data-{n}")
    cfg = VolumeConfig(name=name, capacity_bytes=data.size, format=data.format)
    journaled_volume(ctx, host_name, instance.name, ctx.host_specs()[host_name].pool, cfg)


def _create(
    ctx: FleetContext,
    instance: Instance,
    host_name: str,
    progress: Progress,
    *,
    start: bool,
    entry: int,
) -> Access:
    host = ctx.host(host_name)
    pool = ctx.host_specs()[host_name].pool
    vm = instance.name
    fields = instance.fields
    record_leases(ctx, instance)
    remove_volumes(ctx, host, host_name, vm, instance=instance)  # leftovers of a killed run
    progress(vm, "disk", "")
    root = names.volume(fleet=ctx.fleet, vm=vm, role="root")
    if fields.image:
        base_path, base_format, base_size = ensure_base(ctx, host, host_name, fields.image)
        if fields.clone == "full":

            def copy_root() -> None:
                host.upload_volume(pool, root, base_path, format=base_format)
                if fields.disk > base_size:
                    host.resize_volume(pool, root, fields.disk)

            journaled(ctx, host_name, vm, "volume", root, pool, copy_root)
        else:
            config = VolumeConfig(
                name=root,
                capacity_bytes=max(fields.disk, base_size),
                backing=BackingStore(
                    path=base_path, format="raw" if base_format == "raw" else "qcow2"
                ),
            )
            journaled_volume(ctx, host_name, vm, pool, config)
    else:
        journaled_volume(
            ctx, host_name, vm, pool, VolumeConfig(name=root, capacity_bytes=fields.disk)
        )
    for n in range(len(fields.data_disks)):
        add_data_disk(ctx, instance, host_name, n)
    progress(vm, "seed", "")
    seed = names.volume(fleet=ctx.fleet, vm=vm, role="seed.iso")
    iso = seed_iso(ctx, instance)
    # Host private keys and password hashes: built in the state dir's 0700 tmp/ (swept by the
    # next run's recover after a kill -9), never in the shared system temp dir.
    with tempfile.NamedTemporaryFile(suffix=".iso", dir=ctx.store.tmp_dir()) as tmp:
        tmp.write(iso)
        tmp.flush()
        journaled(
            ctx,
            host_name,
            vm,
            "volume",
            seed,
            pool,
            lambda: host.upload_volume(pool, seed, tmp.name, format="iso"),
        )
    progress(vm, "define", "")
    ensure_networks(ctx, host, instance)
    reach = access(ctx, instance, host_name)
    disks = existing_disks(ctx, instance, host_name)
    domain = domain_config(ctx, instance, host, host_name, disks)
    journaled(ctx, host_name, vm, "domain", vm, pool, lambda: host.define(domain.to_xml()))
    if fields.autostart:
        host.set_autostart(vm, True)
    if start:
        progress(vm, "start", "")
        host.start(vm)
    # Closed only now: a run killed inside start() leaves the domain "paused (starting up)"
    # for good, which must be rolled back and made again rather than count as unchanged.
    ctx.store.finish(entry)
    ctx.store.event(kind="created", vm=vm, message=f"created on {host_name}")
    return reach
