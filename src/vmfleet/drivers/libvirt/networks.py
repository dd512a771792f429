"""libvirt networks: list, ensure (define and start) and remove ours, read DHCP leases."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import libvirt

from vmfleet.drivers.domainxml import DnsHost
from vmfleet.drivers.libvirt.connection import xml_name
from vmfleet.drivers.libvirt.storage import _Storage
from vmfleet.drivers.libvirt.types import Lease, NetworkInfo
from vmfleet.drivers.metadata import NAMESPACE
from vmfleet.errors import HypervisorError, NotOwnedError


class _Networks(_Storage):
    """Networks; only those with our metadata are changed."""

    def list_networks(self) -> list[NetworkInfo]:
        """Every libvirt network on the host (ours or not), sorted by name."""
        conn = self._connection()
        with self._call("list networks"):
            networks = conn.listAllNetworks(0)
        found: list[NetworkInfo] = []
        for net in networks:
            try:
                found.append(_network_info(net))
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                    continue  # removed while we listed
                raise self._error(err, doing="read a network") from err
        return sorted(found, key=lambda n: n.name)

    def get_network(self, name: str) -> NetworkInfo | None:
        """One network by name, or None."""
        net = self._network_or_none(name)
        if net is None:
            return None
        with self._call(f"read network {name!r}"):
            return _network_info(net)

    def ensure_network(self, xml: str, *, autostart: bool = True) -> NetworkInfo:
        """Define and start a network from XML carrying our metadata, unless it exists.

        An existing network of that name must be ours (NotOwnedError otherwise); it is then
        started if inactive but not redefined, even when its XML differs. ValueError when the
        XML itself carries no element in our namespace under `<metadata>`.
        """
        name = xml_name(xml, kind="network")
        if not _network_owned(ET.fromstring(xml)):
            raise ValueError(f"network XML for {name!r} carries no vmfleet metadata")
        conn = self._connection()
        net = self._network_or_none(name)
        if net is None:
            with self._call(f"define network {name!r}"):
                net = conn.networkDefineXMLFlags(xml, libvirt.VIR_NETWORK_DEFINE_VALIDATE)
                net.setAutostart(1 if autostart else 0)
        else:
            self._require_owned_network(net, name=name, doing="ensure network")
        with self._call(f"start network {name!r}"):
            if not net.isActive():
                net.create()
            return _network_info(net)

    def remove_network(self, name: str) -> bool:
        """Stop and undefine one of our networks; False when there was none of that name."""
        net = self._network_or_none(name)
        if net is None:
            return False
        self._require_owned_network(net, name=name, doing="remove network")
        with self._call(f"remove network {name!r}"):
            if net.isActive():
                net.destroy()
            if net.isPersistent():
                net.undefine()
        return True

    def put_dns_host(self, network: str, ip: str, names: Sequence[str]) -> None:
        """Make `names` resolve to `ip` on one of our running networks (live and in its
        definition), replacing entries for that address or those names."""
        self._drop_dns(
            network, lambda host_ip, hostnames: host_ip == ip or bool(hostnames & set(names))
        )
        entry = DnsHost(ip=ip, names=tuple(names)).to_xml()
        self._update_dns(network, libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, entry)

    def drop_dns_host(self, network: str, name: str) -> None:
        """Remove the DNS entries that name `name` from one of our networks (if it exists)."""
        self._drop_dns(network, lambda _ip, hostnames: name in hostnames)

    def _drop_dns(self, network: str, doomed: Callable[[str, set[str]], bool]) -> None:
        net = self._network_or_none(network)
        if net is None:
            return
        self._require_owned_network(net, name=network, doing="change DNS of")
        with self._call(f"read network {network!r}"):
            root = ET.fromstring(net.XMLDesc(0))
        for host in root.findall("dns/host"):
            names = {h.text or "" for h in host.findall("hostname")}
            ip = host.get("ip", "")
            if doomed(ip, names):
                entry = f"<host ip='{ip}'/>"
                self._update_dns(network, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, entry)

    def _update_dns(self, network: str, command: int, entry: str) -> None:
        net = self._network_or_none(network)
        if net is None:
            return
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG if net.isPersistent() else 0
        if net.isActive():
            flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
        with self._call(f"update DNS of network {network!r}"):
            net.update(command, libvirt.VIR_NETWORK_SECTION_DNS_HOST, -1, entry, flags)

    def dhcp_leases(self, network: str) -> list[Lease]:
        """Current DHCP leases of a network (any network: reading changes nothing)."""
        net = self._network_or_none(network)
        if net is None:
            raise HypervisorError(f"network {network!r} does not exist", host=self.name)
        with self._call(f"read DHCP leases of network {network!r}"):
            raw = net.DHCPLeases(None, 0)
        return [
            Lease(
                mac=str(entry["mac"]),
                ip=str(entry["ipaddr"]),
                hostname=entry.get("hostname") or None,
                expiry=datetime.fromtimestamp(int(entry["expirytime"]), tz=UTC),
            )
            for entry in raw
        ]

    def bridge_exists(self, name: str) -> bool | None:
        """Whether the host has a network interface (a bridge) called `name`, asked through
        libvirt so it works for remote hosts too; None when this libvirt cannot say (its
        interface backend, netcf or udev, is missing or failed)."""
        conn = self._connection()
        try:
            conn.interfaceLookupByName(name)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_INTERFACE:
                return False
            return None
        return True

    def _network_or_none(self, name: str) -> Any | None:
        conn = self._connection()
        try:
            return conn.networkLookupByName(name)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return None
            raise self._error(err, doing=f"look up network {name!r}") from err

    def _require_owned_network(self, net: Any, *, name: str, doing: str) -> None:
        with self._call(f"read network {name!r}"):
            root = ET.fromstring(net.XMLDesc(0))
        if not _network_owned(root):
            raise NotOwnedError(
                f"{doing} {name!r}: refused, the network has no vmfleet metadata",
                host=self.name,
            )


def _network_owned(root: ET.Element) -> bool:
    metadata = root.find("metadata")
    return metadata is not None and any(
        child.tag.startswith(f"{{{NAMESPACE}}}") for child in metadata
    )


def _network_fleet(root: ET.Element) -> str | None:
    metadata = root.find("metadata")
    if metadata is None:
        return None
    for child in metadata:
        if child.tag.startswith(f"{{{NAMESPACE}}}"):
            fleet = child.findtext(f"{{{NAMESPACE}}}fleet")
            if fleet:
                return fleet
    return None


def _network_info(net: Any) -> NetworkInfo:
    root = ET.fromstring(net.XMLDesc(0))
    bridge = root.find("bridge")
    persistent = bool(net.isPersistent())
    return NetworkInfo(
        name=str(net.name()),
        uuid=str(net.UUIDString()),
        active=bool(net.isActive()),
        persistent=persistent,
        autostart=bool(net.autostart()) if persistent else False,
        bridge=None if bridge is None else bridge.get("name"),
        owned=_network_owned(root),
        fleet=_network_fleet(root),
        cidrs=_network_cidrs(root),
    )


def _network_cidrs(root: ET.Element) -> tuple[str, ...]:
    found = []
    for ip in root.findall("ip"):
        address = ip.get("address")
        mask = ip.get("prefix") or ip.get("netmask")
        if address is None or mask is None or ip.get("family", "ipv4") != "ipv4":
            continue
        try:
            found.append(str(ipaddress.IPv4Interface(f"{address}/{mask}").network))
        except ValueError:
            continue  # not ours to judge: libvirt accepted it
    return tuple(found)
