"""NICs of a domain: libvirt networks, host bridges and user-mode NICs with port forwards."""

from __future__ import annotations

import ipaddress
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from vmfleet.drivers.domainxml.common import (
    QEMU_NIC_DEVICE,
    NicModel,
    Protocol,
    UserBackend,
    normal_mac,
    require,
    sub,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PortForward:
    """A host port on the loopback forwarded to a guest port (user-mode networking).

    `host_address` must be in 127.0.0.0/8: vmfleet never opens a guest to other hosts.
    """

    host_port: int
    guest_port: int
    proto: Protocol = "tcp"
    host_address: str = "127.0.0.1"

    def __post_init__(self) -> None:
        for port in (self.host_port, self.guest_port):
            require(1 <= port <= 65535, f"port out of range: {port}")
        address = ipaddress.ip_address(self.host_address)
        require(
            isinstance(address, ipaddress.IPv4Address) and address.is_loopback,
            f"a port forward listens on 127.0.0.0/8 only, not {self.host_address}",
        )

    def hostfwd(self) -> str:
        """QEMU's `hostfwd=` value: `tcp:127.0.0.1:2222-:22`."""
        return f"{self.proto}:{self.host_address}:{self.host_port}-:{self.guest_port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkAttachment:
    """A NIC on a libvirt network (`<interface type='network'>`)."""

    network: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeAttachment:
    """A NIC on a host bridge (`<interface type='bridge'>`)."""

    bridge: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UserAttachment:
    """A user-mode NIC (no host setup, outbound NAT) with port forwards on the loopback.

    `backend` picks how it is expressed: `slirp` through `<qemu:commandline>` (works on
    libvirt 9.0 with stock QEMU), `passt` through libvirt's `<portForward>` (needs passt).
    """

    forwards: tuple[PortForward, ...] = ()
    backend: UserBackend = "slirp"


Attachment = NetworkAttachment | BridgeAttachment | UserAttachment


@dataclass(frozen=True, slots=True, kw_only=True)
class NicConfig:
    """One network interface: its MAC (stored lowercase), model, what it is plugged into,
    and its `mtu` (`<mtu size>` on a network or bridge NIC; None keeps the default)."""

    mac: str
    attachment: Attachment
    model: NicModel = "virtio"
    mtu: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", normal_mac(self.mac))

    @property
    def is_slirp(self) -> bool:
        """True when this NIC lives in `<qemu:commandline>` rather than `<devices>`."""
        return isinstance(self.attachment, UserAttachment) and self.attachment.backend == "slirp"

    def to_element(self) -> ET.Element:
        """The `<interface>` element (not for slirp NICs: see `qemu_args`)."""
        attachment = self.attachment
        if isinstance(attachment, NetworkAttachment):
            nic = ET.Element("interface", {"type": "network"})
            sub(nic, "mac", address=self.mac)
            sub(nic, "source", network=attachment.network)
        elif isinstance(attachment, BridgeAttachment):
            nic = ET.Element("interface", {"type": "bridge"})
            sub(nic, "mac", address=self.mac)
            sub(nic, "source", bridge=attachment.bridge)
        else:
            require(attachment.backend == "passt", "slirp NICs go to <qemu:commandline>")
            nic = ET.Element("interface", {"type": "user"})
            sub(nic, "mac", address=self.mac)
        sub(nic, "model", type=self.model)
        if self.mtu is not None and not isinstance(attachment, UserAttachment):
            sub(nic, "mtu", size=str(self.mtu))
        if isinstance(attachment, UserAttachment):
            sub(nic, "backend", type="passt")
            for forward in attachment.forwards:
                port_forward = sub(
                    nic, "portForward", proto=forward.proto, address=forward.host_address
                )
                sub(
                    port_forward,
                    "range",
                    start=str(forward.host_port),
                    to=str(forward.guest_port),
                )
        return nic

    def qemu_args(self, *, netdev_id: str, pci_addr: int | None) -> list[str]:
        """The `-netdev user` and `-device` arguments of a slirp NIC.

        The device is given in JSON, like libvirt's own: QEMU creates all `-device key=val`
        devices before the JSON ones, so a key=val NIC would take a slot libvirt assigned
        to one of its devices and QEMU would refuse to start. In JSON it comes last.
        `pci_addr` None lets QEMU pick the first free slot (right on q35, where libvirt never
        hot-plugs onto pcie.0); on `pc` the caller passes a slot from the top of the bus,
        away from the low slots libvirt assigns and hot-plugs into.
        """
        require(isinstance(self.attachment, UserAttachment), "not a user-mode NIC")
        assert isinstance(self.attachment, UserAttachment)
        netdev = ",".join(
            [f"user,id={netdev_id}"] + [f"hostfwd={f.hostfwd()}" for f in self.attachment.forwards]
        )
        device = {"driver": QEMU_NIC_DEVICE[self.model], "netdev": netdev_id, "mac": self.mac}
        if pci_addr is not None:
            device["addr"] = f"{pci_addr:#04x}"
        return ["-netdev", netdev, "-device", json.dumps(device, separators=(",", ":"))]
