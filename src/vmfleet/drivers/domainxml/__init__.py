"""libvirt XML built from typed objects: domains, storage volumes, networks, snapshots.

One module per element family: `disks`, `nics`, `domain`, `volumes`, `networks`, `snapshots`,
and `parse` (reading a domain back); `common` holds the value types and shared checks.

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

from vmfleet.drivers.domainxml.common import (
    GUEST_AGENT_CHANNEL,
    QEMU_NAMESPACE,
    DiskBus,
    DiskCache,
    DiskDevice,
    DiskDiscard,
    DiskIo,
    DomainType,
    Firmware,
    Graphics,
    ImageFormat,
    LifecycleAction,
    NetworkMode,
    NicModel,
    Protocol,
    UserBackend,
)
from vmfleet.drivers.domainxml.disks import (
    BlockSource,
    DiskConfig,
    DiskSource,
    FileSource,
    VolumeSource,
)
from vmfleet.drivers.domainxml.domain import DomainConfig, KernelBoot
from vmfleet.drivers.domainxml.networks import DhcpHost, DnsHost, NetworkConfig
from vmfleet.drivers.domainxml.nics import (
    Attachment,
    BridgeAttachment,
    NetworkAttachment,
    NicConfig,
    PortForward,
    UserAttachment,
)
from vmfleet.drivers.domainxml.parse import DiskInfo, DomainInfo, NicInfo, parse_domain
from vmfleet.drivers.domainxml.snapshots import SnapshotConfig, SnapshotDisk
from vmfleet.drivers.domainxml.volumes import BackingStore, VolumeConfig

__all__ = [
    "GUEST_AGENT_CHANNEL",
    "QEMU_NAMESPACE",
    "Attachment",
    "BackingStore",
    "BlockSource",
    "BridgeAttachment",
    "DhcpHost",
    "DiskBus",
    "DiskCache",
    "DiskConfig",
    "DiskDevice",
    "DiskDiscard",
    "DiskInfo",
    "DiskIo",
    "DiskSource",
    "DnsHost",
    "DomainConfig",
    "DomainInfo",
    "DomainType",
    "FileSource",
    "Firmware",
    "Graphics",
    "ImageFormat",
    "KernelBoot",
    "LifecycleAction",
    "NetworkAttachment",
    "NetworkConfig",
    "NetworkMode",
    "NicConfig",
    "NicInfo",
    "NicModel",
    "PortForward",
    "Protocol",
    "SnapshotConfig",
    "SnapshotDisk",
    "UserAttachment",
    "UserBackend",
    "VolumeConfig",
    "VolumeSource",
    "parse_domain",
]
