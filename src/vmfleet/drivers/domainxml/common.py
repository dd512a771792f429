"""What every builder shares: namespaces, the value types (Literals), checks and serialising."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Literal

from vmfleet.drivers.metadata import NAMESPACE as OWNER_NAMESPACE
from vmfleet.drivers.metadata import PREFIX as OWNER_PREFIX

QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0"
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"

ET.register_namespace("qemu", QEMU_NAMESPACE)
ET.register_namespace(OWNER_PREFIX, OWNER_NAMESPACE)

DomainType = Literal["kvm", "qemu"]
Firmware = Literal["bios", "uefi"]
Graphics = Literal["vnc"]
LifecycleAction = Literal["destroy", "restart", "preserve", "rename-restart"]
DiskBus = Literal["virtio", "sata", "ide", "scsi"]
DiskDevice = Literal["disk", "cdrom"]
ImageFormat = Literal["qcow2", "raw"]
DiskCache = Literal["default", "none", "writethrough", "writeback", "directsync", "unsafe"]
DiskIo = Literal["native", "threads", "io_uring"]
DiskDiscard = Literal["unmap", "ignore"]
NicModel = Literal["virtio", "e1000", "e1000e", "rtl8139"]
UserBackend = Literal["slirp", "passt"]
Protocol = Literal["tcp", "udp"]
NetworkMode = Literal["nat", "isolated", "bridge"]

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
TARGET_RE = re.compile(r"^(vd|sd|hd|xvd)[a-z]{1,3}$")
HOSTFWD_RE = re.compile(
    r"^(?P<proto>tcp|udp):(?P<addr>[^:]*):(?P<hport>\d+)-(?P<gaddr>[^:]*):(?P<gport>\d+)$"
)
NOT_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
# QEMU device names for the NIC models, used by the slirp backend's `-device`.
QEMU_NIC_DEVICE: dict[str, str] = {
    "virtio": "virtio-net-pci",
    "e1000": "e1000",
    "e1000e": "e1000e",
    "rtl8139": "rtl8139",
}


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str | None) -> ET.Element:
    """Append a child; attributes whose value is None are left out."""
    child = ET.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        child.text = text
    return child


def tostring(root: ET.Element) -> str:
    """Serialise, refusing characters XML 1.0 cannot carry even escaped (NUL, most C0)."""
    for element in root.iter():
        for value in (element.text, *element.attrib.values()):
            if value is not None and NOT_XML_RE.search(value):
                raise ValueError(f"<{element.tag}>: a control character cannot go in XML")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def normal_mac(mac: str) -> str:
    lowered = mac.lower()
    require(bool(MAC_RE.match(lowered)), f"not a MAC address: {mac!r}")
    return lowered
