"""libvirt network documents: nat and isolated networks with DHCP."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from vmfleet.drivers.domainxml.common import NetworkMode, normal_mac, require, sub, tostring


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpHost:
    """A fixed DHCP lease: this MAC always gets this IP (and this host name)."""

    mac: str
    ip: str
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", normal_mac(self.mac))
        ipaddress.IPv4Address(self.ip)


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsHost:
    """Names the network's DNS server answers with this address (`<dns><host>`)."""

    ip: str
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        ipaddress.IPv4Address(self.ip)
        require(bool(self.names), f"a DNS host entry for {self.ip} needs a name")

    def to_xml(self) -> str:
        """The `<host>` element, as virNetworkUpdate takes it."""
        host = ET.Element("host", ip=self.ip)
        for name in self.names:
            sub(host, "hostname", name)
        return tostring(host)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    """A libvirt network.

    `nat` and `isolated` networks get a libvirt bridge (`bridge` names it, else libvirt
    picks `virbrN`), the gateway address (default: the first host of `cidr`), DHCP over
    `dhcp_range` with fixed `hosts`, DNS names under `domain`, and `mtu` (libvirt sets it
    on the bridge and on every guest's tap device; None keeps the default). `bridge` mode attaches
    guests to an existing host bridge: `bridge` is required and libvirt runs no DHCP or DNS.
    """

    name: str
    mode: NetworkMode
    bridge: str | None = None
    cidr: str | None = None
    gateway: str | None = None
    dhcp_range: tuple[str, str] | None = None
    hosts: tuple[DhcpHost, ...] = ()
    domain: str | None = None
    uuid: str | None = None
    mtu: int | None = None

    def __post_init__(self) -> None:
        require(bool(self.name), "a network needs a name")
        if self.mode == "bridge":
            require(self.bridge is not None, f"{self.name}: bridge mode needs a bridge name")
            require(
                self.cidr is None and not self.hosts and self.dhcp_range is None,
                f"{self.name}: a bridge-mode network has no addresses of its own",
            )
            return
        require(self.cidr is not None, f"{self.name}: a {self.mode} network needs a cidr")
        net = self.ip_network
        inside = [self.gateway_address, *(self.dhcp_range or ()), *(h.ip for h in self.hosts)]
        for address in inside:
            require(ipaddress.IPv4Address(address) in net, f"{self.name}: {address} not in {net}")

    @property
    def ip_network(self) -> ipaddress.IPv4Network:
        """The network's address range (strict: host bits of the cidr must be zero)."""
        require(self.cidr is not None, f"{self.name}: no cidr")
        assert self.cidr is not None
        return ipaddress.IPv4Network(self.cidr)

    @property
    def gateway_address(self) -> str:
        """The host's address on the network: `gateway`, else the first usable address."""
        if self.gateway is not None:
            return self.gateway
        return str(next(self.ip_network.hosts()))

    def to_xml(self) -> str:
        """The network XML, as `virNetworkDefineXML` takes it."""
        root = ET.Element("network")
        sub(root, "name", self.name)
        if self.uuid is not None:
            sub(root, "uuid", self.uuid)
        if self.mode == "bridge":
            sub(root, "forward", mode="bridge")
            sub(root, "bridge", name=self.bridge)
            return tostring(root)
        if self.mode == "nat":
            forward = sub(root, "forward", mode="nat")
            sub(sub(forward, "nat"), "port", start="1024", end="65535")
        sub(root, "bridge", name=self.bridge, stp="on", delay="0")
        if self.mtu is not None:
            sub(root, "mtu", size=str(self.mtu))
        if self.domain is not None:
            sub(root, "domain", name=self.domain, localOnly="yes")
        ip = sub(root, "ip", address=self.gateway_address, prefix=str(self.ip_network.prefixlen))
        if self.dhcp_range is not None or self.hosts:
            dhcp = sub(ip, "dhcp")
            if self.dhcp_range is not None:
                sub(dhcp, "range", start=self.dhcp_range[0], end=self.dhcp_range[1])
            for host in self.hosts:
                sub(dhcp, "host", mac=host.mac, name=host.name, ip=host.ip)
        return tostring(root)
