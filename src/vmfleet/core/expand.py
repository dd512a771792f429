"""Templates become instances: names, MACs, IPs, every field resolved.

Pure: the same spec (and the same prior leases) always gives the same instances.
- Names: `{template}-{i}` from 0; one replica keeps the bare name.
- MACs: as written, else 52:54:00 plus three bytes from a hash of fleet, VM and NIC index;
  a clash is resolved by hashing again with a counter.
- IPs: as written, else the lowest free address of the network's CIDR, skipping network,
  gateway, broadcast, reserved, written and already-leased addresses (see
  `spec.addresses`: the CIDR is walked lazily, never listed out).
Prior leases (from the state store) are honoured first, so addresses of existing VMs never
change when a template grows or another template is added.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmfleet.errors import FleetError
from vmfleet.spec.addresses import AddressPool, allocates, gateway_of
from vmfleet.spec.models import FleetSpec, NetworkSpec
from vmfleet.spec.resolve import Effective, effective, indexes, networks, replica_name


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


class AddressPoolExhaustedError(FleetError):
    """A network has no free address left for a VM.

    `validate` refuses a file whose own VMs do not fit; this is left for leases held by VMs
    that are no longer in the file.
    """


def user_data_variables(
    instance: Instance, *, fleet: str, everyone: Sequence[Instance] = ()
) -> dict[str, Any]:
    """The variables a VM's user-data template sees; with `everyone` (the fleet's VMs) also
    `vms` (name → name, ip, ips, template, index, hostname, labels), `templates` (template →
    its VMs) and `groups` (group → its VMs; a template name that is no group gives its
    replicas), so `{{ vms['db'].ip }}` or `{{ groups['web'] | map(attribute='ip') | list }}`
    configure one tier with another's addresses."""
    peers = {i.name: _peer(i) for i in everyone}
    templates: dict[str, list[dict[str, Any]]] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for other in everyone:
        templates.setdefault(other.template, []).append(peers[other.name])
        if other.fields.group:
            groups.setdefault(other.fields.group, []).append(peers[other.name])
    return {
        **_peer(instance),
        "fleet": fleet,
        "macs": [n.mac for n in instance.nics],
        "vms": peers,
        "templates": templates,
        "groups": {**templates, **groups},
    }


def _peer(instance: Instance) -> dict[str, Any]:
    """What a template may know of one VM."""
    ips = [n.ip for n in instance.nics if n.ip]
    return {
        "name": instance.name,
        "template": instance.template,
        "index": instance.index,
        "hostname": instance.hostname,
        "labels": dict(instance.fields.labels),
        "ips": ips,
        "ip": ips[0] if ips else None,
    }


def generated_mac(fleet: str, vm: str, nic: int, attempt: int = 0) -> str:
    """The deterministic MAC for a VM's NIC: 52:54:00 and three bytes of a SHA-256."""
    digest = hashlib.sha256(f"{fleet}/{vm}/{nic}/{attempt}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def expand(spec: FleetSpec, *, fleet: str, leases: Leases | None = None) -> list[Instance]:
    """Every VM of the fleet, in template order then index order."""
    leases = leases or Leases()
    nets = networks(spec)
    planned: list[tuple[str, str, int | None, Effective]] = []
    for name, tmpl in spec.vms.items():
        shared = effective(spec, tmpl, None)  # replicas without an override are alike
        planned += [
            (
                replica_name(name, index),
                name,
                index,
                effective(spec, tmpl, index) if index in tmpl.overrides else shared,
            )
            for index in indexes(tmpl)
        ]
    wanted = {vm for vm, *_ in planned}
    macs = _assign_macs(planned, fleet=fleet, leases=leases, wanted=wanted)
    ips = _assign_ips(planned, nets=nets, leases=leases)
    memberships = _group_memberships(spec)
    routes = {name: _route(network) for name, network in nets.items()}
    out: list[Instance] = []
    for vm, template, index, fields in planned:
        nics = []
        for n, nic in enumerate(fields.nics):
            prefix, gateway, dns = routes[nic.network]
            nics.append(
                InstanceNic(
                    network=nic.network,
                    mode=nets[nic.network].mode,
                    mac=macs[(vm, n)],
                    ip=ips.get((vm, n)),
                    prefix=prefix,
                    gateway=gateway,
                    dns=dns,
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


def _route(network: NetworkSpec) -> tuple[int | None, str | None, tuple[str, ...]]:
    """A network's prefix length, default gateway for its VMs and DNS servers."""
    cidr = ipaddress.IPv4Network(network.cidr) if network.cidr else None
    gateway = gateway_of(network)
    return (
        cidr.prefixlen if cidr else None,
        str(gateway) if gateway and network.mode != "isolated" else None,
        tuple(network.dns) or ((str(gateway),) if gateway and network.mode == "nat" else ()),
    )


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
    # MACs leased to VMs the file no longer has stay theirs until those VMs are removed.
    taken |= {mac for key, mac in leases.macs.items() if key[0] not in wanted}
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


def _assign_ips(
    planned: list[tuple[str, str, int | None, Effective]],
    *,
    nets: Mapping[str, NetworkSpec],
    leases: Leases,
) -> dict[tuple[str, int], str]:
    result: dict[tuple[str, int], str] = {}
    pools: dict[str, AddressPool] = {
        name: AddressPool(network) for name, network in nets.items() if allocates(network)
    }
    used: dict[str, set[str]] = {name: set() for name in pools}  # written or leased
    for vm, _t, index, fields in planned:
        for n, nic in enumerate(fields.nics):
            if nic.ips:
                result[(vm, n)] = nic.ips[index or 0]
                if nic.network in pools:
                    pools[nic.network].take(result[(vm, n)])
                    used[nic.network].add(result[(vm, n)])
    needs = [
        (vm, n, nic.network)
        for vm, _t, _i, fields in planned
        for n, nic in enumerate(fields.nics)
        if (vm, n) not in result and nic.network in pools
    ]
    for vm, n, net_name in needs:
        leased = leases.ips.get((vm, n))
        if leased and leased not in used[net_name]:
            result[(vm, n)] = leased
            used[net_name].add(leased)
            pools[net_name].take(leased)
    # An address leased to a VM (or NIC) the file no longer has stays taken until that VM
    # is removed: the state store refuses to give one address to two VMs. The lease's
    # network is not known here, so it is kept out of every pool (at worst a skipped address).
    needed = {(vm, n) for vm, n, _net in needs}
    for key, leased in leases.ips.items():
        if key not in needed:
            for pool in pools.values():
                pool.take(leased)
    for vm, n, net_name in needs:
        if (vm, n) in result:
            continue
        address = pools[net_name].next_free()
        if address is None:
            raise AddressPoolExhaustedError(
                f"network {net_name!r} has no free address left for VM {vm}"
                " (addresses leased to VMs no longer in the file count as taken)"
            )
        result[(vm, n)] = address
    return result


def _group_memberships(spec: FleetSpec) -> dict[str, set[str]]:
    """VM or template name → groups that list it as a member (directly)."""
    out: dict[str, set[str]] = {}
    for gname, group in spec.groups.items():
        for member in [*group.members, *(m for tier in group.boot_order for m in tier.members)]:
            out.setdefault(member, set()).add(gname)
    return out
