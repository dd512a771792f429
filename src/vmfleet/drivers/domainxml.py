"""libvirt XML built from typed objects: domains, storage volumes, networks, snapshots.

Every document is built with `xml.etree.ElementTree`, never by pasting strings, so every
value is escaped by construction: a name or path holding `'"<>&` or `]]>` comes out as data.
`parse_domain` reads back, from a live domain's XML, what vmfleet needs to compare and
operate on it (disks, NICs and their port forwards, kernel boot, ownership).

The config classes check the invariants that would otherwise give libvirt an invalid
document (a malformed MAC, a port out of range, a forward off the loopback). A violation
raises `ValueError`: it is a bug in the caller, since the spec was validated at load time.

User-mode NICs with host port forwards come in two backends, chosen per NIC:

- `slirp` (default): QEMU's built-in user network, passed through `<qemu:commandline>` as
  `-netdev user,hostfwd=...` and a JSON `-device`, because libvirt 9.0 has no port
  forwards for slirp. libvirt does not know these NICs (no `domiflist`, no hot-unplug, no
  boot order); `parse_domain` still reports them. Checked on Debian 12 (libvirt 9.0,
  QEMU 7.2, TCG) for q35 and pc: the domain starts and QEMU listens on 127.0.0.1:PORT.
- `passt`: libvirt's own `<interface type='user'>` with `<backend type='passt'/>` and
  `<portForward>`. The document passes libvirt 9.0's schema, but Debian 12 builds libvirt
  with passt disabled: defining it there fails ("Invalid value ... 'passt'").
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal

from vmfleet.drivers.metadata import NAMESPACE as OWNER_NAMESPACE
from vmfleet.drivers.metadata import PREFIX as OWNER_PREFIX
from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.errors import HypervisorError

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

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_TARGET_RE = re.compile(r"^(vd|sd|hd|xvd)[a-z]{1,3}$")
_HOSTFWD_RE = re.compile(
    r"^(?P<proto>tcp|udp):(?P<addr>[^:]*):(?P<hport>\d+)-(?P<gaddr>[^:]*):(?P<gport>\d+)$"
)
_NOT_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
# QEMU device names for the NIC models, used by the slirp backend's `-device`.
_QEMU_NIC_DEVICE: dict[str, str] = {
    "virtio": "virtio-net-pci",
    "e1000": "e1000",
    "e1000e": "e1000e",
    "rtl8139": "rtl8139",
}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str | None) -> ET.Element:
    """Append a child; attributes whose value is None are left out."""
    child = ET.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        child.text = text
    return child


def _tostring(root: ET.Element) -> str:
    """Serialise, refusing characters XML 1.0 cannot carry even escaped (NUL, most C0)."""
    for element in root.iter():
        for value in (element.text, *element.attrib.values()):
            if value is not None and _NOT_XML_RE.search(value):
                raise ValueError(f"<{element.tag}>: a control character cannot go in XML")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _normal_mac(mac: str) -> str:
    lowered = mac.lower()
    _require(bool(_MAC_RE.match(lowered)), f"not a MAC address: {mac!r}")
    return lowered


# --------------------------------------------------------------------------- disks


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeSource:
    """A disk backed by a storage pool volume (`<disk type='volume'>`)."""

    pool: str
    volume: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSource:
    """A disk backed by a file on the host (`<disk type='file'>`)."""

    path: str


DiskSource = VolumeSource | FileSource


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskConfig:
    """One disk or CD-ROM of a domain.

    `source` None is an empty CD-ROM drive. A CD-ROM is always read-only and cannot sit on
    the virtio bus (use `sata` on q35, `ide` on pc). `io='native'` needs `cache` `none` or
    `directsync`. `boot_order` (1 = first) sets per-device boot order; when any device has
    one, the domain gets no `<boot dev>`.
    """

    target: str
    source: DiskSource | None
    bus: DiskBus = "virtio"
    device: DiskDevice = "disk"
    format: ImageFormat = "qcow2"
    readonly: bool = False
    cache: DiskCache | None = None
    io: DiskIo | None = None
    discard: DiskDiscard | None = None
    boot_order: int | None = None
    serial: str | None = None

    def __post_init__(self) -> None:
        _require(bool(_TARGET_RE.match(self.target)), f"bad disk target: {self.target!r}")
        if self.device == "cdrom":
            _require(self.bus != "virtio", f"{self.target}: a cdrom cannot be on the virtio bus")
        else:
            _require(self.source is not None, f"{self.target}: a disk needs a source")
        if self.io == "native":
            _require(
                self.cache in ("none", "directsync"),
                f"{self.target}: io='native' needs cache 'none' or 'directsync'",
            )
        _require(self.boot_order is None or self.boot_order >= 1, "boot_order starts at 1")

    def to_element(self) -> ET.Element:
        """The `<disk>` element."""
        kind = "volume" if isinstance(self.source, VolumeSource) else "file"
        disk = ET.Element("disk", {"type": kind, "device": self.device})
        _sub(
            disk,
            "driver",
            name="qemu",
            type=self.format,
            cache=self.cache,
            io=self.io,
            discard=self.discard,
        )
        if isinstance(self.source, VolumeSource):
            _sub(disk, "source", pool=self.source.pool, volume=self.source.volume)
        elif isinstance(self.source, FileSource):
            _sub(disk, "source", file=self.source.path)
        _sub(disk, "target", dev=self.target, bus=self.bus)
        if self.readonly or self.device == "cdrom":
            _sub(disk, "readonly")
        if self.serial is not None:
            _sub(disk, "serial", self.serial)
        if self.boot_order is not None:
            _sub(disk, "boot", order=str(self.boot_order))
        return disk


# --------------------------------------------------------------------------- NICs


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
            _require(1 <= port <= 65535, f"port out of range: {port}")
        address = ipaddress.ip_address(self.host_address)
        _require(
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
    """One network interface: its MAC (stored lowercase), model, and what it is plugged into."""

    mac: str
    attachment: Attachment
    model: NicModel = "virtio"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", _normal_mac(self.mac))

    @property
    def is_slirp(self) -> bool:
        """True when this NIC lives in `<qemu:commandline>` rather than `<devices>`."""
        return isinstance(self.attachment, UserAttachment) and self.attachment.backend == "slirp"

    def to_element(self) -> ET.Element:
        """The `<interface>` element (not for slirp NICs: see `qemu_args`)."""
        attachment = self.attachment
        if isinstance(attachment, NetworkAttachment):
            nic = ET.Element("interface", {"type": "network"})
            _sub(nic, "mac", address=self.mac)
            _sub(nic, "source", network=attachment.network)
        elif isinstance(attachment, BridgeAttachment):
            nic = ET.Element("interface", {"type": "bridge"})
            _sub(nic, "mac", address=self.mac)
            _sub(nic, "source", bridge=attachment.bridge)
        else:
            _require(attachment.backend == "passt", "slirp NICs go to <qemu:commandline>")
            nic = ET.Element("interface", {"type": "user"})
            _sub(nic, "mac", address=self.mac)
        _sub(nic, "model", type=self.model)
        if isinstance(attachment, UserAttachment):
            _sub(nic, "backend", type="passt")
            for forward in attachment.forwards:
                port_forward = _sub(
                    nic, "portForward", proto=forward.proto, address=forward.host_address
                )
                _sub(
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
        _require(isinstance(self.attachment, UserAttachment), "not a user-mode NIC")
        assert isinstance(self.attachment, UserAttachment)
        netdev = ",".join(
            [f"user,id={netdev_id}"] + [f"hostfwd={f.hostfwd()}" for f in self.attachment.forwards]
        )
        device = {"driver": _QEMU_NIC_DEVICE[self.model], "netdev": netdev_id, "mac": self.mac}
        if pci_addr is not None:
            device["addr"] = f"{pci_addr:#04x}"
        return ["-netdev", netdev, "-device", json.dumps(device, separators=(",", ":"))]


# --------------------------------------------------------------------------- domain


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelBoot:
    """Direct kernel boot: QEMU loads kernel and initrd from host files."""

    kernel: str
    initrd: str | None = None
    cmdline: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainConfig:
    """Everything vmfleet puts in a domain's XML.

    `cpu_model` None means `host-passthrough` under kvm and QEMU's default model under qemu
    (TCG); the values `host-passthrough`, `host-model` and `maximum` select that CPU mode,
    anything else is a named model (`qemu64`, `Haswell`, ...). `max_vcpus` above `vcpus`
    allows CPU hot-plug; `current_memory_mib` below `memory_mib` starts the balloon inflated.
    A pty serial console is always there; `serial_log_path` also logs it to a host file.
    `firmware='uefi'` lets libvirt pick an EFI firmware (`<os firmware='efi'>`).
    """

    name: str
    domain_type: DomainType
    memory_mib: int
    vcpus: int
    uuid: str | None = None
    arch: str = "x86_64"
    machine: str | None = "q35"
    emulator: str | None = None
    cpu_model: str | None = None
    current_memory_mib: int | None = None
    max_vcpus: int | None = None
    disks: tuple[DiskConfig, ...] = ()
    nics: tuple[NicConfig, ...] = ()
    serial_log_path: str | None = None
    guest_agent: bool = True
    graphics: Graphics | None = None
    firmware: Firmware = "bios"
    kernel_boot: KernelBoot | None = None
    owner: OwnerMetadata | None = None
    description: str | None = None
    rng: bool = True
    memballoon: bool = True
    on_poweroff: LifecycleAction = "destroy"
    on_reboot: LifecycleAction = "restart"
    on_crash: LifecycleAction = "destroy"

    def __post_init__(self) -> None:
        _require(bool(self.name), "a domain needs a name")
        _require(self.memory_mib >= 1 and self.vcpus >= 1, "memory and vcpus must be positive")
        if self.current_memory_mib is not None:
            _require(
                1 <= self.current_memory_mib <= self.memory_mib,
                "current_memory_mib must be between 1 and memory_mib",
            )
        if self.max_vcpus is not None:
            _require(self.max_vcpus >= self.vcpus, "max_vcpus must be at least vcpus")
        targets = [disk.target for disk in self.disks]
        _require(len(targets) == len(set(targets)), f"duplicate disk targets: {targets}")
        macs = [nic.mac for nic in self.nics]
        _require(len(macs) == len(set(macs)), f"duplicate MAC addresses: {macs}")

    def to_element(self) -> ET.Element:
        """The `<domain>` element."""
        root = ET.Element("domain", {"type": self.domain_type})
        _sub(root, "name", self.name)
        if self.uuid is not None:
            _sub(root, "uuid", self.uuid)
        if self.description is not None:
            _sub(root, "description", self.description)
        if self.owner is not None:
            _sub(root, "metadata").append(self.owner.to_element())
        _sub(root, "memory", str(self.memory_mib), unit="MiB")
        if self.current_memory_mib is not None:
            _sub(root, "currentMemory", str(self.current_memory_mib), unit="MiB")
        if self.max_vcpus is not None and self.max_vcpus > self.vcpus:
            _sub(root, "vcpu", str(self.max_vcpus), placement="static", current=str(self.vcpus))
        else:
            _sub(root, "vcpu", str(self.vcpus), placement="static")
        root.append(self._os_element())
        if self.arch in ("x86_64", "i686"):
            features = _sub(root, "features")
            _sub(features, "acpi")
            _sub(features, "apic")
        cpu = self._cpu_element()
        if cpu is not None:
            root.append(cpu)
        _sub(root, "clock", offset="utc")
        _sub(root, "on_poweroff", self.on_poweroff)
        _sub(root, "on_reboot", self.on_reboot)
        _sub(root, "on_crash", self.on_crash)
        root.append(self._devices_element())
        args = self._qemu_args()
        if args:
            commandline = _sub(root, f"{{{QEMU_NAMESPACE}}}commandline")
            for arg in args:
                _sub(commandline, f"{{{QEMU_NAMESPACE}}}arg", value=arg)
        return root

    def to_xml(self) -> str:
        """The domain XML document, as `virConnectDefineXML` takes it."""
        return _tostring(self.to_element())

    def _os_element(self) -> ET.Element:
        os_el = ET.Element("os", {"firmware": "efi"} if self.firmware == "uefi" else {})
        _sub(os_el, "type", "hvm", arch=self.arch, machine=self.machine)
        if self.kernel_boot is not None:
            _sub(os_el, "kernel", self.kernel_boot.kernel)
            if self.kernel_boot.initrd is not None:
                _sub(os_el, "initrd", self.kernel_boot.initrd)
            if self.kernel_boot.cmdline is not None:
                _sub(os_el, "cmdline", self.kernel_boot.cmdline)
        return os_el

    def _cpu_element(self) -> ET.Element | None:
        model = self.cpu_model
        if model is None:
            model = "host-passthrough" if self.domain_type == "kvm" else None
        if model is None:
            return None
        if model in ("host-passthrough", "host-model", "maximum"):
            return ET.Element("cpu", {"mode": model, "check": "none"})
        cpu = ET.Element("cpu", {"mode": "custom", "match": "exact", "check": "none"})
        _sub(cpu, "model", model, fallback="forbid")
        return cpu

    def _devices_element(self) -> ET.Element:
        devices = ET.Element("devices")
        if self.emulator is not None:
            _sub(devices, "emulator", self.emulator)
        for disk in self.disks:
            devices.append(disk.to_element())
        if any(disk.bus == "scsi" for disk in self.disks):
            # libvirt's default SCSI HBA is an emulated LSI card; virtio-scsi is the fast one.
            _sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
        for nic in self.nics:
            if not nic.is_slirp:
                devices.append(nic.to_element())
        serial = _sub(devices, "serial", type="pty")
        if self.serial_log_path is not None:
            _sub(serial, "log", file=self.serial_log_path, append="on")
        _sub(serial, "target", port="0")
        console = _sub(devices, "console", type="pty")
        _sub(console, "target", type="serial", port="0")
        if self.guest_agent:
            channel = _sub(devices, "channel", type="unix")
            _sub(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
        if self.graphics == "vnc":
            graphics = _sub(devices, "graphics", type="vnc", port="-1", autoport="yes")
            _sub(graphics, "listen", type="address", address="127.0.0.1")
            # virtio-vga: VGA-compatible for the BIOS, unlike libvirt's default (cirrus).
            _sub(_sub(devices, "video"), "model", type="virtio")
        if self.memballoon:
            _sub(devices, "memballoon", model="virtio")
        else:
            _sub(devices, "memballoon", model="none")
        if self.rng:
            rng = _sub(devices, "rng", model="virtio")
            _sub(rng, "backend", "/dev/urandom", model="random")
        return devices

    def _qemu_args(self) -> list[str]:
        args: list[str] = []
        on_pc = self.machine is not None and (
            self.machine == "pc" or self.machine.startswith("pc-i440fx")
        )
        slirp_count = 0
        for index, nic in enumerate(self.nics):
            if not nic.is_slirp:
                continue
            # On pc, take slots from the top of pci.0 (0x1f, 0x1e, ...); libvirt fills and
            # hot-plugs from the bottom. On q35 (or an unknown machine) QEMU picks.
            pci_addr = 0x1F - slirp_count if on_pc else None
            args += nic.qemu_args(netdev_id=f"vmfnet{index}", pci_addr=pci_addr)
            slirp_count += 1
        return args


# --------------------------------------------------------------------------- volumes


@dataclass(frozen=True, slots=True, kw_only=True)
class BackingStore:
    """The image a copy-on-write volume reads through to (a linked clone's base)."""

    path: str
    format: ImageFormat = "qcow2"


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeConfig:
    """A storage volume; with `backing` it is a qcow2 overlay over that image."""

    name: str
    capacity_bytes: int
    format: ImageFormat = "qcow2"
    backing: BackingStore | None = None

    def __post_init__(self) -> None:
        _require(bool(self.name) and "/" not in self.name, f"bad volume name: {self.name!r}")
        _require(self.capacity_bytes > 0, "capacity must be positive")
        _require(
            self.backing is None or self.format == "qcow2", "only a qcow2 volume has a backing"
        )

    def to_xml(self) -> str:
        """The volume XML, as `virStorageVolCreateXML` takes it."""
        root = ET.Element("volume", {"type": "file"})
        _sub(root, "name", self.name)
        _sub(root, "capacity", str(self.capacity_bytes), unit="bytes")
        _sub(root, "allocation", "0", unit="bytes")
        target = _sub(root, "target")
        _sub(target, "format", type=self.format)
        if self.format == "qcow2":
            # libvirt still defaults to qcow2 v2 (compat 0.10); v3 has zero clusters and
            # lazy refcounts, and every QEMU of the last decade reads it.
            _sub(target, "compat", "1.1")
        if self.backing is not None:
            backing = _sub(root, "backingStore")
            _sub(backing, "path", self.backing.path)
            _sub(backing, "format", type=self.backing.format)
        return _tostring(root)


# --------------------------------------------------------------------------- networks


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpHost:
    """A fixed DHCP lease: this MAC always gets this IP (and this host name)."""

    mac: str
    ip: str
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", _normal_mac(self.mac))
        ipaddress.IPv4Address(self.ip)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    """A libvirt network.

    `nat` and `isolated` networks get a libvirt bridge (`bridge` names it, else libvirt
    picks `virbrN`), the gateway address (default: the first host of `cidr`), DHCP over
    `dhcp_range` with fixed `hosts`, and DNS names under `domain`. `bridge` mode attaches
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

    def __post_init__(self) -> None:
        _require(bool(self.name), "a network needs a name")
        if self.mode == "bridge":
            _require(self.bridge is not None, f"{self.name}: bridge mode needs a bridge name")
            _require(
                self.cidr is None and not self.hosts and self.dhcp_range is None,
                f"{self.name}: a bridge-mode network has no addresses of its own",
            )
            return
        _require(self.cidr is not None, f"{self.name}: a {self.mode} network needs a cidr")
        net = self.ip_network
        inside = [self.gateway_address, *(self.dhcp_range or ()), *(h.ip for h in self.hosts)]
        for address in inside:
            _require(ipaddress.IPv4Address(address) in net, f"{self.name}: {address} not in {net}")

    @property
    def ip_network(self) -> ipaddress.IPv4Network:
        """The network's address range (strict: host bits of the cidr must be zero)."""
        _require(self.cidr is not None, f"{self.name}: no cidr")
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
        _sub(root, "name", self.name)
        if self.uuid is not None:
            _sub(root, "uuid", self.uuid)
        if self.mode == "bridge":
            _sub(root, "forward", mode="bridge")
            _sub(root, "bridge", name=self.bridge)
            return _tostring(root)
        if self.mode == "nat":
            forward = _sub(root, "forward", mode="nat")
            _sub(_sub(forward, "nat"), "port", start="1024", end="65535")
        _sub(root, "bridge", name=self.bridge, stp="on", delay="0")
        if self.domain is not None:
            _sub(root, "domain", name=self.domain, localOnly="yes")
        ip = _sub(root, "ip", address=self.gateway_address, prefix=str(self.ip_network.prefixlen))
        if self.dhcp_range is not None or self.hosts:
            dhcp = _sub(ip, "dhcp")
            if self.dhcp_range is not None:
                _sub(dhcp, "range", start=self.dhcp_range[0], end=self.dhcp_range[1])
            for host in self.hosts:
                _sub(dhcp, "host", mac=host.mac, name=host.name, ip=host.ip)
        return _tostring(root)


# --------------------------------------------------------------------------- snapshots


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotDisk:
    """How one disk takes part in a snapshot; `external` writes new writes to `file`."""

    target: str
    mode: Literal["internal", "external", "no"] = "external"
    file: str | None = None
    format: ImageFormat = "qcow2"

    def __post_init__(self) -> None:
        _require(
            (self.mode == "external") == (self.file is not None),
            f"{self.target}: an external snapshot disk (and only it) needs a file",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotConfig:
    """A domain snapshot.

    With no `disks`, libvirt's default: an internal snapshot of every disk, with the RAM
    state when `memory` (a running domain) or without (shut off). With `disks` naming any
    `external` disk it is a disk-only external snapshot (`memory` must be False): pass
    `VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY` when `disk_only` says so.
    """

    name: str
    description: str | None = None
    memory: bool = False
    disks: tuple[SnapshotDisk, ...] = ()

    def __post_init__(self) -> None:
        _require(bool(self.name) and "/" not in self.name, f"bad snapshot name: {self.name!r}")
        _require(
            not (self.memory and self.disk_only),
            "external snapshots with memory state are not supported",
        )

    @property
    def disk_only(self) -> bool:
        """True when the snapshot must be created with the DISK_ONLY flag."""
        return any(disk.mode == "external" for disk in self.disks)

    def to_xml(self) -> str:
        """The domainsnapshot XML, as `virDomainSnapshotCreateXML` takes it."""
        root = ET.Element("domainsnapshot")
        _sub(root, "name", self.name)
        if self.description is not None:
            _sub(root, "description", self.description)
        _sub(root, "memory", snapshot="internal" if self.memory else "no")
        if self.disks:
            disks = _sub(root, "disks")
            for disk in self.disks:
                element = _sub(disks, "disk", name=disk.target, snapshot=disk.mode)
                if disk.file is not None:
                    _sub(element, "driver", type=disk.format)
                    _sub(element, "source", file=disk.file)
        return _tostring(root)


# --------------------------------------------------------------------------- reading back


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskInfo:
    """A disk as found in a live domain; `source` None is an empty drive or a kind we skip."""

    target: str
    device: str
    bus: str | None
    source: DiskSource | None
    format: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NicInfo:
    """A NIC as found in a live domain.

    `kind` is libvirt's interface type (`network`, `bridge`, `user`, ...) or `slirp` for
    our `<qemu:commandline>` NICs; `source` the network or bridge name; `forwards` the
    port forwards of user-mode NICs.
    """

    mac: str
    kind: str
    source: str | None = None
    model: str | None = None
    forwards: tuple[PortForward, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainInfo:
    """What vmfleet reads back from a live domain's XML."""

    name: str
    uuid: str | None
    disks: tuple[DiskInfo, ...]
    nics: tuple[NicInfo, ...]
    kernel_boot: KernelBoot | None
    owner: OwnerMetadata | None


def parse_domain(domain_xml: str) -> DomainInfo:
    """Read disks, NICs (with their forwards), kernel boot and ownership from domain XML.

    Works on both what `DomainConfig.to_xml` writes and what libvirt returns (which adds
    addresses, aliases and defaults). Port forwards on other than the loopback, or that do
    not parse, are left out rather than reported wrongly. Raises `HypervisorError` when
    the text is not XML or not a domain.
    """
    try:
        root = ET.fromstring(domain_xml)
    except ET.ParseError as exc:
        raise HypervisorError(f"unreadable domain XML: {exc}") from exc
    if root.tag != "domain":
        raise HypervisorError(f"not a domain XML document: <{root.tag}>")
    return DomainInfo(
        name=root.findtext("name") or "",
        uuid=root.findtext("uuid"),
        disks=tuple(_parse_disk(disk) for disk in root.iterfind("devices/disk")),
        nics=tuple(_parse_interface(nic) for nic in root.iterfind("devices/interface"))
        + _parse_slirp_nics(root),
        kernel_boot=_parse_kernel_boot(root),
        owner=OwnerMetadata.from_domain_xml(domain_xml),
    )


def _parse_disk(disk: ET.Element) -> DiskInfo:
    source_el = disk.find("source")
    source: DiskSource | None = None
    if source_el is not None:
        if disk.get("type") == "volume" and source_el.get("pool") and source_el.get("volume"):
            source = VolumeSource(
                pool=source_el.get("pool", ""), volume=source_el.get("volume", "")
            )
        elif disk.get("type") == "file" and source_el.get("file"):
            source = FileSource(path=source_el.get("file", ""))
    target = disk.find("target")
    driver = disk.find("driver")
    return DiskInfo(
        target=target.get("dev", "") if target is not None else "",
        device=disk.get("device", "disk"),
        bus=target.get("bus") if target is not None else None,
        source=source,
        format=driver.get("type") if driver is not None else None,
    )


def _parse_interface(nic: ET.Element) -> NicInfo:
    kind = nic.get("type", "")
    source_el = nic.find("source")
    source = None
    if source_el is not None:
        source = source_el.get("network") or source_el.get("bridge")
    model_el = nic.find("model")
    forwards: list[PortForward] = []
    for port_forward in nic.iterfind("portForward"):
        proto = port_forward.get("proto", "tcp")
        address = port_forward.get("address", "127.0.0.1")
        for port_range in port_forward.iterfind("range"):
            start = port_range.get("start", "")
            forward = _forward_or_none(
                proto=proto,
                address=address,
                host_port=start,
                guest_port=port_range.get("to", start),
            )
            if forward is not None:
                forwards.append(forward)
    mac_el = nic.find("mac")
    return NicInfo(
        mac=(mac_el.get("address", "") if mac_el is not None else "").lower(),
        kind=kind,
        source=source,
        model=model_el.get("type") if model_el is not None else None,
        forwards=tuple(forwards),
    )


def _parse_slirp_nics(root: ET.Element) -> tuple[NicInfo, ...]:
    args = [arg.get("value", "") for arg in root.iterfind(f"{{{QEMU_NAMESPACE}}}commandline/*")]
    netdevs: dict[str, tuple[PortForward, ...]] = {}
    devices: list[dict[str, str]] = []
    for flag, value in itertools.pairwise(args):
        options = _qemu_options(value)
        if flag == "-netdev" and options.get("") == "user" and "id" in options:
            netdevs[options["id"]] = _hostfwds(value)
        elif flag == "-device" and "netdev" in options and "mac" in options:
            devices.append(options)
    model_of = {device: model for model, device in _QEMU_NIC_DEVICE.items()}
    return tuple(
        NicInfo(
            mac=device["mac"].lower(),
            kind="slirp",
            model=model_of.get(device.get("", "")),
            forwards=netdevs.get(device["netdev"], ()),
        )
        for device in devices
        if device["netdev"] in netdevs
    )


def _qemu_options(value: str) -> dict[str, str]:
    """`user,id=a,hostfwd=...` or `{"driver": ...}` as a dict of strings.

    The leading bare word of the key=value form (the netdev type or device driver) is under
    the key '', as is a JSON device's `driver`.
    """
    options: dict[str, str] = {}
    if value.startswith("{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return options
        if isinstance(parsed, dict):
            options = {str(k): str(v) for k, v in parsed.items() if isinstance(v, str | int)}
            options[""] = options.pop("driver", "")
        return options
    for index, part in enumerate(value.split(",")):
        key, sep, val = part.partition("=")
        if not sep and index == 0:
            options[""] = key
        elif sep and key not in options:
            options[key] = val
    return options


def _hostfwds(value: str) -> tuple[PortForward, ...]:
    forwards = []
    for part in value.split(","):
        key, _, val = part.partition("=")
        match = _HOSTFWD_RE.match(val) if key == "hostfwd" else None
        if match is None:
            continue
        forward = _forward_or_none(
            proto=match["proto"],
            address=match["addr"] or "0.0.0.0",  # QEMU's empty address: all of them
            host_port=match["hport"],
            guest_port=match["gport"],
        )
        if forward is not None:
            forwards.append(forward)
    return tuple(forwards)


def _forward_or_none(
    *, proto: str, address: str, host_port: str, guest_port: str
) -> PortForward | None:
    if proto not in ("tcp", "udp"):
        return None
    try:
        return PortForward(
            proto="tcp" if proto == "tcp" else "udp",
            host_address=address,
            host_port=int(host_port),
            guest_port=int(guest_port),
        )
    except ValueError:
        return None


def _parse_kernel_boot(root: ET.Element) -> KernelBoot | None:
    kernel = root.findtext("os/kernel")
    if not kernel:
        return None
    return KernelBoot(
        kernel=kernel, initrd=root.findtext("os/initrd"), cmdline=root.findtext("os/cmdline")
    )
