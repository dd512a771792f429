"""Templates become instances: names, MACs, IPs, every field resolved.

Pure: the same spec (and the same prior leases) always gives the same instances.
- Names: `{template}-{i}` from 0; one replica keeps the bare name.
- MACs: as written, else 52:54:00 plus three bytes from a hash of fleet, VM and NIC index;
  a clash is resolved by hashing again with a counter.
- IPs: as written, else the lowest free address of the network's CIDR, skipping network,
  gateway, broadcast, reserved, written and already-leased addresses.
Prior leases (from the state store) are honoured first, so addresses of existing VMs never
change when a template grows or another template is added.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from vmfleet.spec.models import FleetSpec, NetworkSpec
from vmfleet.spec.resolve import Effective, effective, indexes, networks, replica_name
from vmfleet.spec.validate import gateway_of


@dataclass(frozen=True, slots=True)
class InstanceNic:
    """One NIC of one VM: its network, MAC, and static IP (None: DHCP or user-mode)."""

    network: str
    mode: str
    mac: str
    ip: str | None
    prefix: int | None
    gateway: str | None
    dns: tuple[str, ...]
    model: str = "virtio"


@dataclass(frozen=True, slots=True)
class Instance:
    """One VM the fleet wants."""

    name: str
    template: str
    index: int | None
    fields: Effective
    nics: tuple[InstanceNic, ...]
    groups: tuple[str, ...] = field(default=())

    @property
    def hostname(self) -> str:
        return self.fields.hostname if self.index is None and self.fields.hostname else self.name


@dataclass(frozen=True, slots=True)
class Leases:
    """Addresses already handed out: (vm, nic index) → MAC and → IP."""

    macs: Mapping[tuple[str, int], str] = field(default_factory=dict)
    ips: Mapping[tuple[str, int], str] = field(default_factory=dict)


class AddressPoolExhaustedError(ValueError):
    """A network has no free address left for a VM."""


def generated_mac(fleet: str, vm: str, nic: int, attempt: int = 0) -> str:
    """The deterministic MAC for a VM's NIC: 52:54:00 and three bytes of a SHA-256."""
    digest = hashlib.sha256(f"{fleet}/{vm}/{nic}/{attempt}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def expand(spec: FleetSpec, *, fleet: str, leases: Leases | None = None) -> list[Instance]:
    """Every VM of the fleet, in template order then index order."""
    leases = leases or Leases()
    nets = networks(spec)
    planned: list[tuple[str, str, int | None, Effective]] = [
        (replica_name(name, index), name, index, effective(spec, template, index))
        for name, template in spec.vms.items()
        for index in indexes(template)
    ]
    wanted = {vm for vm, *_ in planned}
    macs = _assign_macs(planned, fleet=fleet, leases=leases, wanted=wanted)
    ips = _assign_ips(planned, nets=nets, leases=leases, wanted=wanted)
    memberships = _group_memberships(spec)
    out: list[Instance] = []
    for vm, template, index, fields in planned:
        nics = []
        for n, nic in enumerate(fields.nics):
            network = nets[nic.network]
            ip = ips.get((vm, n))
            cidr = ipaddress.IPv4Network(network.cidr) if network.cidr else None
            gateway = gateway_of(network)
            nics.append(
                InstanceNic(
                    network=nic.network,
                    mode=network.mode,
                    mac=macs[(vm, n)],
                    ip=ip,
                    prefix=cidr.prefixlen if cidr else None,
                    gateway=str(gateway) if gateway and network.mode != "isolated" else None,
                    dns=tuple(network.dns)
                    or ((str(gateway),) if gateway and network.mode == "nat" else ()),
                    model=nic.model,
                )
            )
        groups = tuple(
            sorted(
                memberships.get(vm, set())
                | memberships.get(template, set())
                | ({fields.group} if fields.group else set())
            )
        )
        out.append(Instance(vm, template, index, fields, tuple(nics), groups))
    return out


def _assign_macs(
    planned: list[tuple[str, str, int | None, Effective]],
    *,
    fleet: str,
    leases: Leases,
    wanted: set[str],
) -> dict[tuple[str, int], str]:
    taken: set[str] = set()
    result: dict[tuple[str, int], str] = {}
    for vm, _t, index, fields in planned:
        for n, nic in enumerate(fields.nics):
            if nic.mac_addresses:
                result[(vm, n)] = nic.mac_addresses[index or 0]
                taken.add(result[(vm, n)])
    for key, mac in sorted(leases.macs.items()):
        if key[0] in wanted and key not in result and mac not in taken:
            result[key] = mac
            taken.add(mac)
    for vm, _t, _i, fields in planned:
        for n in range(len(fields.nics)):
            if (vm, n) in result:
                continue
            attempt = 0
            mac = generated_mac(fleet, vm, n, attempt)
            while mac in taken:
                attempt += 1
                mac = generated_mac(fleet, vm, n, attempt)
            result[(vm, n)] = mac
            taken.add(mac)
    return result


def _usable(network: NetworkSpec) -> list[ipaddress.IPv4Address]:
    if network.cidr is None:
        return []
    net = ipaddress.IPv4Network(network.cidr)
    skip = {net.network_address, net.broadcast_address}
    gateway = gateway_of(network)
    if gateway:
        skip.add(gateway)
    skip |= set(reserved_addresses(network))
    return [a for a in net.hosts() if a not in skip]


def reserved_addresses(network: NetworkSpec) -> list[ipaddress.IPv4Address]:
    """Every address in `reserved:` (single addresses, CIDRs, or `a-b` ranges)."""
    out: list[ipaddress.IPv4Address] = []
    for entry in network.reserved:
        if "-" in entry:
            start, end = (ipaddress.IPv4Address(x.strip()) for x in entry.split("-", 1))
            out += [ipaddress.IPv4Address(a) for a in range(int(start), int(end) + 1)]
        elif "/" in entry:
            out += list(ipaddress.IPv4Network(entry, strict=False))
        else:
            out.append(ipaddress.IPv4Address(entry))
    return out


def _assign_ips(
    planned: list[tuple[str, str, int | None, Effective]],
    *,
    nets: Mapping[str, NetworkSpec],
    leases: Leases,
    wanted: set[str],
) -> dict[tuple[str, int], str]:
    result: dict[tuple[str, int], str] = {}
    taken: dict[str, set[str]] = {}
    for vm, _t, index, fields in planned:
        for n, nic in enumerate(fields.nics):
            if nic.ips:
                result[(vm, n)] = nic.ips[index or 0]
                taken.setdefault(nic.network, set()).add(result[(vm, n)])
    needs: list[tuple[str, int, str]] = []
    for vm, _t, _i, fields in planned:
        for n, nic in enumerate(fields.nics):
            network = nets[nic.network]
            if (vm, n) in result or network.mode not in ("nat", "isolated", "bridge", "existing"):
                continue
            if network.cidr is None or (network.mode in ("bridge", "existing") and network.dhcp):
                continue  # addresses come from someone else's DHCP
            needs.append((vm, n, nic.network))
    for vm, n, net_name in needs:
        leased = leases.ips.get((vm, n))
        used = taken.setdefault(net_name, set())
        if leased and leased not in used and vm in wanted:
            result[(vm, n)] = leased
            used.add(leased)
    for vm, n, net_name in needs:
        if (vm, n) in result:
            continue
        used = taken.setdefault(net_name, set())
        free = (str(a) for a in _usable(nets[net_name]) if str(a) not in used)
        address = next(free, None)
        if address is None:
            raise AddressPoolExhaustedError(f"network {net_name!r} has no free address for {vm}")
        result[(vm, n)] = address
        used.add(address)
    return result


def _group_memberships(spec: FleetSpec) -> dict[str, set[str]]:
    """VM or template name → groups that list it as a member (directly)."""
    out: dict[str, set[str]] = {}
    for gname, group in spec.groups.items():
        for member in [*group.members, *(m for tier in group.boot_order for m in tier.members)]:
            out.setdefault(member, set()).add(gname)
    return out
