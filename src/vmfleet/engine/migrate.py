"""Moving one VM to another host, live or stopped, journaled so a kill leaves one copy.

Live: the destination gets the VM's base image (uploaded once, like `up` does), an empty
overlay over it and empty data disks, and a byte copy of the seed; libvirt then mirrors the
VM's own layers (root overlay, data disks) and its memory while it runs. Offline: the VM is
shut down, its volumes are copied byte for byte (an overlay keeps its backing reference, so
the destination's base image must sit at the same path), defined and started there. A live
migration that libvirt refuses for a reason a stopped copy avoids (CPU, devices) falls
back to offline, and says so.

One journal entry (kind `migration`, host = source, `to` = destination) is open from
before the destination is touched until the source copy is gone; it also holds the moving
process's pid and the phase it reached, so other processes' `list`, `status` and `hosts`
show the move (`engine.inflight`). The source copy is
removed only once the destination runs. `recover` (run at the start of the next
`up`/`down`/`migrate`) cancels a migration job a killed run left, then finishes the move
when the destination runs, or removes what it made there and restarts the source copy
when the move had stopped it: exactly one copy is left either way.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vmfleet.core import moves
from vmfleet.core.expand import Instance
from vmfleet.core.placement import HostFacts
from vmfleet.drivers import names
from vmfleet.drivers.domainxml import BackingStore, VolumeConfig
from vmfleet.engine import hosts as engine_hosts
from vmfleet.engine.apply import observe
from vmfleet.engine.context import FleetContext
from vmfleet.engine.provision.base_images import ensure_base
from vmfleet.engine.provision.journal import rollback, volume_names
from vmfleet.engine.provision.networks import ensure_networks
from vmfleet.engine.provision.ports import forward_port
from vmfleet.errors import (
    FleetError,
    HypervisorError,
    LiveMigrationRefusedError,
    PlacementError,
    UsageError,
)
from vmfleet.state import durations
from vmfleet.state.store import JournalEntry

if TYPE_CHECKING:  # libvirt loads only when a move runs (`vmfleet --help` stays light)
    from vmfleet.drivers.libvirt import LibvirtHost
    from vmfleet.drivers.libvirt.migration import MigrationProgress

Progress = Callable[[str, str, str], None]  # (vm, phase, detail)
KIND = "migration"
SHUTDOWN_TIMEOUT = 60.0
MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Options:
    """`to`: the destination (None: the scheduler picks); `force`: move even when the
    destination breaks a required placement rule. Bandwidth in MiB/s, downtime in ms;
    `timeout`: seconds a live move may take before it is cancelled, or, moving offline,
    seconds the guest has to shut down before it is powered off (default 60)."""

    to: str | None = None
    offline: bool = False
    bandwidth: int | None = None
    max_downtime: int | None = None
    timeout: float | None = None
    force: bool = False


@dataclass(frozen=True, slots=True)
class Report:
    """What one move did: `mode` is live (p2p or managed) or offline; `fallback` says why
    a live move became an offline one."""

    vm: str
    source: str
    target: str
    mode: str
    seconds: float
    downtime_ms: float | None
    fallback: str | None = None


def current(ctx: FleetContext) -> tuple[list[moves.Current], dict[str, str]]:
    """The fleet's VMs where they run now (as move planning sees them), and VM -> host for
    every VM of the fleet found on a reachable host."""
    observed = {o.name: o.host for o in observe(ctx).vms}
    by_name = {i.name: i for i in ctx.instances()}
    vms = [
        moves.Current(engine_hosts.request(by_name[vm]), host)
        for vm, host in sorted(observed.items())
        if vm in by_name
    ]
    return vms, observed


def facts(ctx: FleetContext) -> list[HostFacts]:
    """The hosts as move planning sees them (cordons included). No KVM probe boots: KVM
    only orders hosts, and what the capabilities say is enough for that."""
    return [r.facts for r in engine_hosts.gather(ctx, probe=False)]


def target_for(ctx: FleetContext, vm: str, options: Options) -> tuple[str, str]:
    """(source, destination) for one VM, checked against the placement rules; a destination
    that breaks one is refused with the reasons unless `options.force`."""
    vms, observed = current(ctx)
    if vm not in {i.name for i in ctx.instances()}:
        raise UsageError(f"unknown VM {vm} in fleet {ctx.fleet}")
    if vm not in observed:
        raise UsageError(f"{vm} runs on no reachable host (vmfleet evacuate recreates it)")
    source = observed[vm]
    if options.to is not None and options.to not in ctx.host_specs():
        raise UsageError(f"no host {options.to} in fleet {ctx.fleet}")
    target, reasons = moves.where_to(
        facts(ctx), vms, vm, target=options.to, strategy=ctx.loaded.spec.placement.strategy
    )
    if target is None and options.force and options.to is not None and options.to != source:
        return source, options.to
    if target is None:
        hint = " (--force moves it anyway)" if options.to is not None else ""
        raise PlacementError(f"{vm} cannot move{hint}:\n" + "\n".join(f"  - {r}" for r in reasons))
    return source, target


def migrate(
    ctx: FleetContext,
    vm: str,
    options: Options,
    progress: Progress,
    *,
    source: str | None = None,
    target: str | None = None,
) -> Report:
    """Move one VM (see the module docstring); `source` and `target` skip the placement
    check when a drain has already planned the move."""
    if source is None or target is None:
        source, target = target_for(ctx, vm, options)
    instance = next(i for i in ctx.instances() if i.name == vm)
    src = ctx.host(source)
    if src.snapshot_files(vm):
        raise UsageError(f"{vm} has external snapshots: delete them before moving it")
    info = src.get_domain(vm)
    running = info is not None and info.state == "running"
    offline = options.offline or not running
    detail = {"to": target, "offline": offline, "was_running": running, "pid": os.getpid()}
    phases = _Phases(ctx, progress, detail, host=source, vm=vm)
    fallback: str | None = None
    try:
        if offline:
            report = _offline(ctx, instance, source, target, options, phases, start=running)
        else:
            try:
                report = _live(ctx, instance, source, target, options, phases)
            except LiveMigrationRefusedError as refused:
                fallback = f"live migration refused ({refused}); moving it stopped instead"
                phases(vm, "fallback", fallback)
                remove_copy(ctx, target, vm)
                phases.restart(detail | {"offline": True})
                report = _offline(ctx, instance, source, target, options, phases, start=True)
    except BaseException:
        try:
            _settle(ctx, vm, source, target, was_running=running)
        finally:
            ctx.store.finish(phases.entry, status="failed")
        raise
    phases(vm, "cleanup", f"removing the copy on {source}")
    remove_copy(ctx, source, vm)
    ctx.store.finish(phases.entry)
    ctx.store.event(kind="migrated", vm=vm, message=f"moved from {source} to {target}")
    durations.record(ctx.store, "migration", report[1], subject=vm)
    if report[2] is not None:
        durations.record(ctx.store, "migration-downtime", report[2] / 1000, subject=vm)
    return Report(vm, source, target, report[0], report[1], report[2], fallback)


class _Phases:
    """The move's journal entry, and its progress callback: each new phase is recorded in
    the entry (for other processes' `list`/`status`/`hosts`), then reported."""

    def __init__(
        self,
        ctx: FleetContext,
        progress: Progress,
        detail: dict[str, object],
        *,
        host: str,
        vm: str,
    ) -> None:
        self._ctx, self._progress, self._host, self._vm = ctx, progress, host, vm
        self._phase = ""
        self.entry = self._open(detail)

    def _open(self, detail: dict[str, object]) -> int:
        return self._ctx.store.intent(
            run=self._ctx.run_id, host=self._host, vm=self._vm, kind=KIND, target=self._vm,
            detail=detail,
        )  # fmt: skip

    def restart(self, detail: dict[str, object]) -> None:
        """Close the entry as undone and open another (a live move turned offline)."""
        self._ctx.store.finish(self.entry, status="undone")
        self.entry, self._phase = self._open(detail), ""

    def __call__(self, vm: str, phase: str, detail: str) -> None:
        if phase != self._phase:
            self._ctx.store.note(self.entry, phase=phase)
            self._phase = phase
        self._progress(vm, phase, detail)


def _ends(ctx: FleetContext, source: str, target: str) -> tuple[LibvirtHost, LibvirtHost, str, str]:
    """Both hosts of a move and their pools."""
    specs = ctx.host_specs()
    return ctx.host(source), ctx.host(target), specs[source].pool, specs[target].pool


def _live(
    ctx: FleetContext,
    instance: Instance,
    source: str,
    target: str,
    options: Options,
    progress: Progress,
) -> tuple[str, float, float | None]:
    from vmfleet.drivers.libvirt.migration import MigrationOptions

    vm = instance.name
    src, dst = ctx.host(source), ctx.host(target)
    progress(vm, "prepare", f"base image and empty disks on {target}")
    copied = _prepare(ctx, instance, source, target)

    def report(reading: MigrationProgress) -> None:
        progress(vm, "migrate", describe(reading))

    xml = _file_disks(
        _for_destination(ctx, src.migratable_xml(vm), vm, source, target),
        dst,
        pool=ctx.host_specs()[target].pool,
    )
    persist = _for_destination(ctx, src.migratable_xml(vm, inactive=True), vm, source, target)
    progress(vm, "migrate", f"to {target}")
    result = src.migrate_live(
        vm,
        dst,
        MigrationOptions(
            bandwidth=options.bandwidth,
            max_downtime=options.max_downtime,
            timeout=options.timeout,
            copy_disks=copied,
            dest_xml=xml,
            persist_xml=persist,
        ),
        progress=report,
    )
    return f"live ({result.mode})", result.seconds, result.downtime_ms


def describe(reading: MigrationProgress) -> str:
    """One live row: phase, memory and disk left, transfer rate."""
    parts = [reading.phase, f"memory {reading.memory_remaining // MiB} MiB left"]
    if reading.disk_total:
        parts.append(f"disk {reading.disk_remaining // MiB} MiB left")
    parts.append(f"{reading.rate / MiB:.1f} MiB/s")
    return ", ".join(parts)


def _prepare(ctx: FleetContext, instance: Instance, source: str, target: str) -> tuple[str, ...]:
    """Everything a live move needs on the destination before libvirt copies the VM's own
    layers: networks, the base image, an empty overlay over it, empty data disks, the seed.
    Returns the disk targets libvirt must copy."""
    vm, fields = instance.name, instance.fields
    src, dst, src_pool, dst_pool = _ends(ctx, source, target)
    ensure_networks(ctx, dst, instance)
    root = names.volume(fleet=ctx.fleet, vm=vm, role="root")
    root_info = src.get_volume(src_pool, root)
    if root_info is None:
        raise HypervisorError(f"root volume {root} is missing", host=source, vm=vm)
    backing = None
    if fields.image and root_info.backing_path:
        base_path, base_format, _size = ensure_base(ctx, dst, target, fields.image)
        backing = BackingStore(path=base_path, format="raw" if base_format == "raw" else "qcow2")
    dst.create_volume(
        dst_pool,
        VolumeConfig(
            name=root,
            capacity_bytes=root_info.capacity,
            format="qcow2" if backing or root_info.format == "qcow2" else "raw",
            backing=backing,
        ).to_xml(),
    )
    copied = ["vda"]
    for n, data in enumerate(fields.data_disks):
        name = names.volume(fleet=ctx.fleet, vm=vm, role=f"data-{n}")
        dst.create_volume(
            dst_pool, VolumeConfig(name=name, capacity_bytes=data.size, format=data.format).to_xml()
        )
        copied.append(f"vd{chr(ord('c') + n)}")
    seed = names.volume(fleet=ctx.fleet, vm=vm, role="seed.iso")
    if src.get_volume(src_pool, seed) is not None:
        src.copy_volume(src_pool, seed, dst, dst_pool)
    return tuple(copied)


def _offline(
    ctx: FleetContext,
    instance: Instance,
    source: str,
    target: str,
    options: Options,
    progress: Progress,
    *,
    start: bool,
) -> tuple[str, float, float | None]:
    vm, fields = instance.name, instance.fields
    src, dst, src_pool, dst_pool = _ends(ctx, source, target)
    began = time.monotonic()
    root = names.volume(fleet=ctx.fleet, vm=vm, role="root")
    root_info = src.get_volume(src_pool, root)
    ensure_networks(ctx, dst, instance)
    if fields.image and root_info is not None and root_info.backing_path:
        base_path, _format, _size = ensure_base(ctx, dst, target, fields.image)
        if base_path != root_info.backing_path:
            raise HypervisorError(
                f"the base image is at {base_path} on {target} but at "
                f"{root_info.backing_path} on {source}: a stopped overlay can only move "
                "between pools at the same path",
                host=target,
                vm=vm,
            )
    progress(vm, "stop", f"on {source}")
    stopped_at = time.monotonic()
    src.shutdown(vm, timeout=options.timeout or SHUTDOWN_TIMEOUT)
    for name in volume_names(ctx, vm, instance):
        if src.get_volume(src_pool, name) is not None:
            progress(vm, "copy", name)
            src.copy_volume(src_pool, name, dst, dst_pool)
    xml = _for_destination(ctx, src.domain_xml(vm, inactive=True), vm, source, target)
    progress(vm, "define", f"on {target}")
    dst.define(xml)
    if fields.autostart:
        dst.set_autostart(vm, True)
    downtime: float | None = None
    if start:
        progress(vm, "start", f"on {target}")
        dst.start(vm)
        downtime = (time.monotonic() - stopped_at) * 1000
    return "offline", time.monotonic() - began, downtime


_HOSTFWD = re.compile(r"(hostfwd=[a-z]+:[0-9.]+:)([0-9]+)(-)")
_POOL = re.compile(r"(<source\b[^>]*\bpool=['\"])([^'\"]+)(['\"])")


def _for_destination(ctx: FleetContext, xml: str, vm: str, source: str, target: str) -> str:
    """The domain XML for the destination: each 127.0.0.1 forward on the port leased there
    (same slot), disks in the destination's pool."""
    slots = {
        int(le.value): le.slot
        for le in ctx.store.leases("port")
        if le.scope == source and le.vm == vm
    }

    def port(match: re.Match[str]) -> str:
        slot = slots.get(int(match.group(2)))
        if slot is None:
            return match.group(0)  # not ours to move
        return match.group(1) + str(forward_port(ctx, host=target, vm=vm, slot=slot)) + "-"

    xml = _HOSTFWD.sub(port, xml)
    src_pool, dst_pool = (ctx.host_specs()[h].pool for h in (source, target))
    if src_pool != dst_pool:
        xml = _POOL.sub(
            lambda m: (
                m.group(1) + (dst_pool if m.group(2) == src_pool else m.group(2)) + m.group(3)
            ),
            xml,
        )
    return xml


_VOLUME_DISK = re.compile(
    r"<disk type=(['\"])volume\1(?P<rest>[^>]*>(?:(?!</disk>).)*?)<source pool=(['\"])[^'\"]*\3 "
    r"volume=(['\"])(?P<volume>[^'\"]+)\4",
    re.DOTALL,
)


def _file_disks(xml: str, dst: LibvirtHost, *, pool: str) -> str:
    """Pool-volume disks as plain files at their paths on the destination: libvirt mirrors
    only the top layer into a target it can find by path (it does not look up volumes)."""

    def as_file(match: re.Match[str]) -> str:
        path = dst.volume_path(pool, match.group("volume"))
        return f"<disk type='file'{match.group('rest')}<source file='{path}'"

    return _VOLUME_DISK.sub(as_file, xml)


def remove_copy(ctx: FleetContext, host_name: str, vm: str) -> None:
    """Remove one copy of a VM from one host: its domain (if ours), its volumes (data disks
    included) and the forward ports leased there. Its other leases and host key stay."""
    instance = next((i for i in ctx.instances() if i.name == vm), None)
    disks = len(instance.fields.data_disks) if instance is not None else 0
    rollback(ctx, host_name, vm, data_disks=disks)
    ctx.store.release(vm=vm, kind="port", scope=host_name)


def _settle(ctx: FleetContext, vm: str, source: str, target: str, *, was_running: bool) -> str:
    """Leave exactly one copy after an interrupted move: finish it when the destination
    runs, else undo the destination and restart the source copy if the move stopped it."""
    src, dst = ctx.host(source), ctx.host(target)
    _cancel_job(src, vm)
    there = dst.get_domain(vm)
    if there is not None and there.state == "running":
        remove_copy(ctx, source, vm)
        return f"finished moving {vm} from {source} to {target}"
    remove_copy(ctx, target, vm)  # the destination never ran: the source copy is the VM
    here = src.get_domain(vm)
    if here is not None and not here.active and was_running:
        src.start(vm)
    return f"rolled back the move of {vm} to {target}"


def _cancel_job(host: LibvirtHost, vm: str) -> None:
    """Cancel a migration job left running on the source, and wait until it has ended."""
    if host.migration_job(vm) is None:
        return
    host.abort_job(vm)
    deadline = time.monotonic() + 30
    while host.migration_job(vm) is not None and time.monotonic() < deadline:
        time.sleep(0.2)


def recover(ctx: FleetContext, entry: JournalEntry) -> str | None:
    """Settle a move a killed run left open; None (entry kept) while a host is unreachable."""
    target = str(entry.detail.get("to", ""))
    try:
        ctx.host(entry.host)
        ctx.host(target)
    except HypervisorError:
        return None
    try:
        done = _settle(
            ctx,
            entry.vm,
            entry.host,
            target,
            was_running=bool(entry.detail.get("was_running", False)),
        )
    except FleetError:
        return None
    ctx.store.finish(entry.id, status="done" if done.startswith("finished") else "undone")
    return done
