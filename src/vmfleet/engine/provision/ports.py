"""How a VM is reached: 127.0.0.1 forward ports (leased, stable across runs), MAC/IP leases."""

from __future__ import annotations

import socket
import zlib
from dataclasses import dataclass

from vmfleet.core.expand import Instance
from vmfleet.drivers.domainxml import parse_domain
from vmfleet.engine.context import FleetContext
from vmfleet.errors import HostUnreachableError, HypervisorError

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
    """The port of a VM's forward: its lease, else the port its existing domain (ours, of
    this fleet) forwards for that slot, read back from libvirt (so a lost state dir does not
    lose it); None when neither exists. Read-only: leases nothing."""
    for lease in ctx.store.leases("port"):
        if lease.scope == host and lease.vm == vm and lease.slot == slot:
            return int(lease.value)
    return _domain_forwards(ctx, host=host, vm=vm).get(slot)


def forward_port(ctx: FleetContext, *, host: str, vm: str, slot: int = 0) -> int:
    """A 127.0.0.1 port for a VM's forward, stable across runs and unique on the host.

    Order: the lease; else the port the VM's existing domain already forwards (leased
    again); else a new free port, leased.
    """
    known = existing_forward(ctx, host=host, vm=vm, slot=slot)
    if known is not None:
        return known
    taken = {int(le.value) for le in ctx.store.leases("port") if le.scope == host}
    start = zlib.crc32(f"{ctx.fleet}/{vm}/{slot}".encode()) % PORT_SPAN
    for step in range(PORT_SPAN):
        port = PORT_BASE + (start + step) % PORT_SPAN
        if port in taken or not _port_free(port):
            continue
        ctx.store.lease(kind="port", scope=host, value=str(port), vm=vm, slot=slot)
        return port
    raise HypervisorError("no free port for a forward", host=host, vm=vm)


def existing_forward(ctx: FleetContext, *, host: str, vm: str, slot: int = 0) -> int | None:
    """The port leased for a forward, else the one the VM's domain (ours, of this fleet)
    forwards for that slot, leased again; None when neither exists. Slot numbers as in
    `forward_port`: a NIC's index for its SSH forward, FORWARD_SLOT_BASE + guest port for
    the first NIC's others."""
    port = leased_port(ctx, host=host, vm=vm, slot=slot)
    if port is not None and not ctx.store.readonly:
        ctx.store.lease(kind="port", scope=host, value=str(port), vm=vm, slot=slot)
    return port


def _domain_forwards(ctx: FleetContext, *, host: str, vm: str) -> dict[int, int]:
    """slot → 127.0.0.1 port of the user-mode forwards in the VM's domain XML."""
    try:
        target = ctx.host(host)
        info = target.get_domain(vm)
        if info is None or info.owner is None or info.owner.fleet != ctx.fleet:
            return {}
        nics = parse_domain(info.xml).nics
    except HostUnreachableError:
        return {}
    # A NIC's slot is its index in the spec; MACs are derived from fleet, VM and slot.
    wanted = next((i for i in ctx.instances() if i.name == vm), None)
    by_mac = {n.mac: slot for slot, n in enumerate(wanted.nics)} if wanted else {}
    slots: dict[int, int] = {}
    for position, nic in enumerate(n for n in nics if n.forwards):
        index = by_mac.get(nic.mac, position)
        for forward in nic.forwards:
            if forward.guest_port == 22:
                slots.setdefault(index, forward.host_port)
            if index == 0:
                slots.setdefault(FORWARD_SLOT_BASE + forward.guest_port, forward.host_port)
    return slots


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
