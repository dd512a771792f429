"""Reading a live domain's XML back: disks, NICs (slirp ones included), kernel boot, owner."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from vmfleet.drivers.domainxml.common import HOSTFWD_RE, QEMU_NAMESPACE, QEMU_NIC_DEVICE
from vmfleet.drivers.domainxml.disks import DiskSource, FileSource, VolumeSource
from vmfleet.drivers.domainxml.domain import KernelBoot
from vmfleet.drivers.domainxml.nics import PortForward
from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.errors import HypervisorError


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
    serial_logs: tuple[str, ...] = ()  # host files the serial consoles log to


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
        serial_logs=tuple(
            log.get("file", "") for log in root.iterfind("devices/serial/log") if log.get("file")
        ),
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
    model_of = {device: model for model, device in QEMU_NIC_DEVICE.items()}
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
        match = HOSTFWD_RE.match(val) if key == "hostfwd" else None
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
