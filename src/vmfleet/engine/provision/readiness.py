"""Waiting until a VM passes its readiness check (running, agent, ssh, port:N)."""

from __future__ import annotations

import time
from collections.abc import Callable

from vmfleet.core.expand import Instance
from vmfleet.drivers.guest import forwarded_port_open, port_open, ssh_banner, wait_until
from vmfleet.drivers.libvirt import LibvirtHost
from vmfleet.engine.context import FleetContext
from vmfleet.engine.provision.ports import (
    CONTROL_GUEST_PORT,
    FORWARD_SLOT_BASE,
    Access,
    forward_port,
)
from vmfleet.errors import GuestError


def wait_ready(
    ctx: FleetContext,
    instance: Instance,
    host_name: str,
    reach: Access,
    *,
    cancelled: Callable[[], bool] = lambda: False,
) -> float:
    """Block until the VM passes its readiness check; seconds waited. GuestError on timeout."""
    ready = instance.fields.ready
    check = ready.wait_for
    started = time.monotonic()
    host = ctx.host(host_name)
    if check == "none":
        return 0.0
    if check == "running":
        ok = wait_until(
            lambda: _running(host, instance.name), timeout=ready.timeout, cancelled=cancelled
        )
    elif check == "agent":
        ok = wait_until(
            lambda: host.agent_ping(instance.name, timeout=2.0),
            timeout=ready.timeout,
            interval=1.0,
            cancelled=cancelled,
        )
    elif check == "ssh":
        if reach.address is None:
            raise GuestError("no address to check SSH on", vm=instance.name)
        ssh_address = reach.address
        ok = wait_until(
            lambda: ssh_banner(ssh_address, reach.port) is not None,
            timeout=ready.timeout,
            cancelled=cancelled,
        )
    elif check.startswith("port:"):
        guest = int(check[5:])
        if reach.address is None:
            raise GuestError("no address to check the port on", vm=instance.name)
        target = reach.address
        if target == "127.0.0.1":
            port = (
                reach.port
                if guest == 22
                else forward_port(
                    ctx, host=host_name, vm=instance.name, slot=FORWARD_SLOT_BASE + guest
                )
            )
            control = forward_port(
                ctx, host=host_name, vm=instance.name, slot=FORWARD_SLOT_BASE + CONTROL_GUEST_PORT
            )
            ok = wait_until(
                lambda: forwarded_port_open(target, port, control=control),
                timeout=ready.timeout,
                cancelled=cancelled,
            )
        else:
            ok = wait_until(
                lambda: port_open(target, guest), timeout=ready.timeout, cancelled=cancelled
            )
    else:
        raise GuestError(f"readiness check {check!r} is not available for VMs", vm=instance.name)
    if not ok:
        raise GuestError(f"not ready ({check}) after {ready.timeout:.0f}s", vm=instance.name)
    return time.monotonic() - started


def _running(host: LibvirtHost, vm: str) -> bool:
    info = host.get_domain(vm)
    return info is not None and info.state == "running"
