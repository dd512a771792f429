"""Making one VM go away: stop, undefine, delete its volumes and overlays, release leases."""

from __future__ import annotations

from pathlib import Path

from vmfleet.drivers import names
from vmfleet.drivers.domainxml import parse_domain
from vmfleet.engine import hostkeys
from vmfleet.engine.context import FleetContext
from vmfleet.engine.provision.journal import Progress, attached_volumes, remove_volumes
from vmfleet.engine.provision.networks import forget_dns
from vmfleet.errors import HypervisorError


def remove(ctx: FleetContext, host_name: str, vm: str, progress: Progress) -> None:
    """Stop, undefine, delete the VM's volumes and release its leases. Base images stay."""
    host = ctx.host(host_name)
    info = host.get_domain(vm)
    attached: list[str] = []
    overlays: list[str] = []
    logs: tuple[str, ...] = ()
    if info is not None:
        if info.owner is None or info.owner.fleet != ctx.fleet:
            raise HypervisorError("not owned by this fleet; left alone", host=host_name, vm=vm)
        domain = parse_domain(info.xml)
        attached = attached_volumes(domain)
        logs = tuple(p for p in domain.serial_logs if p == names.serial_log(vm))
        overlays = host.snapshot_files(vm)  # external snapshots' files: gone with the VM
        progress(vm, "stop", "")
        if info.active:
            host.destroy(vm)
        progress(vm, "undefine", "")
        host.undefine(vm)
    progress(vm, "volumes", "")
    remove_volumes(ctx, host, host_name, vm, extra=attached)
    for path in overlays:
        parsed = names.parse_volume(Path(path).name)
        if parsed and parsed[:2] == (ctx.fleet, vm):
            host.delete_file_volume(path, vm=vm)
    forget_dns(ctx, host, vm)
    for log in logs:
        if not host.remove_serial_log(log, vm=vm) and host.remote:
            ctx.store.event(kind="left", vm=vm, message=f"serial log {log} left on {host_name}")
    ctx.store.release(vm=vm)
    hostkeys.forget_host_key(ctx, vm)
    ctx.store.event(kind="removed", vm=vm, message=f"removed from {host_name}")
