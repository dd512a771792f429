"""How a VM is reached: 127.0.0.1 forward ports (leased, stable across runs), MAC/IP leases."""

from __future__ import annotations

import socket
import zlib
from dataclasses import dataclass

from vmfleet.core.expand import Instance
from vmfleet.engine.context import FleetContext
from vmfleet.errors import HypervisorError

PORT_BASE = 22000
PORT_SPAN = 20000
# Lease slots of extra forwards: FORWARD_SLOT_BASE + guest port (slot 0 is SSH).
FORWARD_SLOT_BASE = 100000
# A guest port nothing listens on: a forward to it shows when the guest's network answers.
CONTROL_GUEST_PORT = 1


@dataclass(frozen=True)
class Access:
    """How to reach a VM's SSH: an address and port (a 127.0.0.1 forward for user NICs)."""

    address: str | None
    port: int


def leased_port(ctx: FleetContext, *, host: str, vm: str, slot: int = 0) -> int | None:
    """The port leased to a VM's forward, None when none was (read-only: leases nothing)."""
    for lease in ctx.store.leases("port"):
        if lease.scope == host and lease.vm == vm and lease.slot == slot:
            return int(lease.value)
    return None


def forward_port(ctx: FleetContext, *, host: str, vm: str, slot: int = 0) -> int:
    """A 127.0.0.1 port for a VM's forward, stable across runs and unique on the host."""
    leased = leased_port(ctx, host=host, vm=vm, slot=slot)
    if leased is not None:
        return leased
    taken = {int(le.value) for le in ctx.store.leases("port") if le.scope == host}
    start = zlib.crc32(f"{ctx.fleet}/{vm}/{slot}".encode()) % PORT_SPAN
    for step in range(PORT_SPAN):
        port = PORT_BASE + (start + step) % PORT_SPAN
        if port in taken or not _port_free(port):
            continue
        ctx.store.lease(kind="port", scope=host, value=str(port), vm=vm, slot=slot)
        return port
    raise HypervisorError("no free port for a forward", host=host, vm=vm)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def record_leases(ctx: FleetContext, instance: Instance) -> None:
    """Keep the VM's MACs and IPs so they never change while it exists."""
    for slot, nic in enumerate(instance.nics):
        ctx.store.lease(kind="mac", scope=ctx.fleet, value=nic.mac, vm=instance.name, slot=slot)
        if nic.ip:
            ctx.store.lease(kind="ip", scope=nic.network, value=nic.ip, vm=instance.name, slot=slot)


def access(ctx: FleetContext, instance: Instance, host: str) -> Access:
    """Where `ssh` reaches this VM from here."""
    for nic in instance.nics:
        if nic.mode == "user":
            return Access("127.0.0.1", forward_port(ctx, host=host, vm=instance.name))
    for nic in instance.nics:
        if nic.ip:
            return Access(nic.ip, 22)
    return Access(None, 22)
