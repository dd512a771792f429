"""The fleet's libvirt networks: names, NIC attachments, creating and removing them."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from vmfleet.core.expand import Instance
from vmfleet.drivers import names
from vmfleet.drivers.domainxml import BridgeAttachment, NetworkAttachment, NetworkConfig
from vmfleet.drivers.metadata import NAMESPACE, PREFIX
from vmfleet.engine.context import FleetContext
from vmfleet.spec.resolve import networks

if TYPE_CHECKING:
    from vmfleet.drivers.libvirt import LibvirtHost  # types only: libvirt loads on use


def network_name(fleet: str, network: str) -> str:
    """The libvirt name of a network vmfleet creates for a fleet."""
    return names.network(fleet=fleet, network=network)


def attachment_for(ctx: FleetContext, network: str) -> NetworkAttachment | BridgeAttachment:
    """Where a non-user NIC plugs in: our network, someone's existing one, or a host bridge."""
    spec = networks(ctx.loaded.spec)[network]
    if spec.mode == "bridge":
        assert spec.bridge is not None
        return BridgeAttachment(bridge=spec.bridge)
    if spec.mode == "existing":
        assert spec.name is not None
        return NetworkAttachment(network=spec.name)
    return NetworkAttachment(network=network_name(ctx.fleet, network))


def ensure_networks(ctx: FleetContext, host: LibvirtHost, instance: Instance) -> None:
    """Create the fleet's nat/isolated networks this VM needs (once; owned by the fleet), and
    make its name and `NAME.FLEET` resolve to its address there for the other VMs."""
    nets = networks(ctx.loaded.spec)
    for nic in instance.nics:
        ensure_network(ctx, host, nic.network)
        if nic.ip and nets[nic.network].mode in ("nat", "isolated"):
            with _network_guard:
                host.put_dns_host(
                    network_name(ctx.fleet, nic.network),
                    nic.ip,
                    (instance.name, f"{instance.name}.{ctx.fleet}"),
                )


def forget_dns(ctx: FleetContext, host: LibvirtHost, vm: str) -> None:
    """Take a removed VM's name out of the DNS of every network the fleet created."""
    for name, spec in networks(ctx.loaded.spec).items():
        if spec.mode in ("nat", "isolated"):
            with _network_guard:
                host.drop_dns_host(network_name(ctx.fleet, name), vm)


def ensure_network(ctx: FleetContext, host: LibvirtHost, network: str) -> None:
    """Create the fleet's network `network` on a host unless it is there (nat/isolated
    only: the other modes attach to what the host has)."""
    spec = networks(ctx.loaded.spec)[network]
    if spec.mode not in ("nat", "isolated"):
        return
    config = NetworkConfig(
        name=network_name(ctx.fleet, network),
        mode=spec.mode,
        cidr=spec.cidr,
        gateway=spec.gateway,
        domain=spec.domain,
        mtu=spec.mtu,
    )
    with _network_guard:
        host.ensure_network(owned_network_xml(config.to_xml(), fleet=ctx.fleet, network=network))


_network_guard = threading.Lock()


def owned_network_xml(xml: str, *, fleet: str, network: str) -> str:
    """Network XML with our ownership mark in `<metadata>`, so only we ever remove it."""
    root = ET.fromstring(xml)
    metadata = root.find("metadata")
    if metadata is None:
        metadata = ET.SubElement(root, "metadata")
    mark = ET.SubElement(metadata, f"{{{NAMESPACE}}}network")
    ET.SubElement(mark, f"{{{NAMESPACE}}}fleet").text = fleet
    ET.SubElement(mark, f"{{{NAMESPACE}}}name").text = network
    ET.register_namespace(PREFIX, NAMESPACE)
    return ET.tostring(root, encoding="unicode")


def remove_networks(ctx: FleetContext, host: LibvirtHost) -> list[str]:
    """Remove the networks this fleet created on a host (call when none of its VMs is left)."""
    removed = []
    for info in host.list_networks():
        if info.owned and info.fleet == ctx.fleet:
            host.remove_network(info.name)
            removed.append(info.name)
    return removed
