"""Typed results of the libvirt host: small frozen dataclasses, never libvirt objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

import libvirt

from vmfleet.drivers.metadata import OwnerMetadata

KiB = 1024
MiB = 1024 * KiB


class DomainState(StrEnum):
    """A domain's run state, named as `virsh domstate` names it."""

    NOSTATE = "nostate"
    RUNNING = "running"
    BLOCKED = "blocked"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"  # being shut down
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    PMSUSPENDED = "pmsuspended"


STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: DomainState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: DomainState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: DomainState.BLOCKED,
    libvirt.VIR_DOMAIN_PAUSED: DomainState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: DomainState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: DomainState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: DomainState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: DomainState.PMSUSPENDED,
}


class ShutdownResult(StrEnum):
    """How `shutdown` ended: the domain was already off, went off by itself, or was destroyed."""

    ALREADY_OFF = "already-off"
    GRACEFUL = "graceful"
    FORCED = "forced"


@dataclass(frozen=True, slots=True)
class GuestCapability:
    """One guest kind a host can run: OS type and arch, with the domain types it supports.

    `firmware` lists what the domain capabilities offer (e.g. `efi`) for the first domain
    type; empty when the driver cannot tell.
    """

    os_type: str
    arch: str
    domain_types: tuple[str, ...]
    machines: tuple[str, ...]
    emulator: str | None
    firmware: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HostCapabilities:
    """What a host is and can run. `kvm_usable` is None when the KVM probe was not run."""

    hostname: str
    arch: str
    cpus: int
    memory_bytes: int
    guests: tuple[GuestCapability, ...]
    kvm_usable: bool | None
    libvirt_version: str
    host_uuid: str = ""  # empty when the driver does not say (libvirt's test driver)
    hypervisor_version: str = ""  # QEMU's version on qemu:// hosts

    def domain_types(self, arch: str | None = None) -> tuple[str, ...]:
        """Domain types (`kvm`, `qemu`, ...) offered for `arch` (default: the host's)."""
        wanted = arch or self.arch
        found: list[str] = []
        for guest in self.guests:
            if guest.arch == wanted and guest.os_type == "hvm":
                found += [t for t in guest.domain_types if t not in found]
        return tuple(found)


@dataclass(frozen=True, slots=True)
class BootProbe:
    """How the probe payload fared in a domain of `domain_type` (see `LibvirtHost.boot_probe`).

    `console` is what the serial console showed (SeaBIOS, then the payload's stage markers),
    for explaining a failure; `error` is libvirt's message when the domain could not start.
    """

    domain_type: str
    booted: bool
    seconds: float
    console: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DomainInfo:
    """One domain as the host sees it. Sizes are bytes.

    `owner` is None for a domain vmfleet did not create. `uptime_seconds` is only known for
    running domains on a local `qemu:///system` host (from the QEMU process); else None.
    """

    name: str
    uuid: str
    state: DomainState
    owner: OwnerMetadata | None
    vcpus: int
    max_vcpus: int
    memory_bytes: int
    max_memory_bytes: int
    autostart: bool
    persistent: bool
    uptime_seconds: float | None = None
    # the persistent definition's owner mark, when it differs from the running domain's
    # (a change staged for the next boot); None when it is the same
    config_owner: OwnerMetadata | None = None
    # the live XML read with the rest, so callers need no second read that could race a
    # migration or removal finishing in between
    xml: str = field(default="", repr=False, compare=False)

    @property
    def active(self) -> bool:
        """True while a QEMU process exists for it (running, paused, ...), False when off."""
        return self.state not in (DomainState.SHUTOFF, DomainState.NOSTATE)


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """A storage pool. Sizes in bytes; `path` is the target directory (None for non-dir pools)."""

    name: str
    path: str | None
    capacity: int
    allocation: int
    available: int
    active: bool
    autostart: bool


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    """A storage volume. `format` as libvirt reports it (`qcow2`, `raw`, ...), None if unknown."""

    name: str
    pool: str
    path: str
    capacity: int
    allocation: int
    format: str | None
    backing_path: str | None = None


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """A libvirt network; `owned` when it carries our metadata, `fleet` when that names one."""

    name: str
    uuid: str
    active: bool
    persistent: bool
    autostart: bool
    bridge: str | None
    owned: bool
    fleet: str | None
    cidrs: tuple[str, ...] = ()  # the IPv4 networks of its <ip> elements, e.g. 192.168.122.0/24


@dataclass(frozen=True, slots=True)
class Lease:
    """A DHCP lease handed out by a libvirt network. `expiry` is UTC."""

    mac: str
    ip: str
    hostname: str | None
    expiry: datetime


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """libvirt keepalive: a probe every `interval` s; dead after `count` unanswered probes."""

    interval: int = 5
    count: int = 3


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One domain snapshot as libvirt keeps it.

    `state` is the domain's state when it was taken (`disk-snapshot` states read as the
    state vmfleet wrote into the description, else running); `kind` internal or external;
    `overlays` the (disk target, overlay file) pairs of an external one; `size_bytes` what
    its overlays take on disk, or for an internal one the RAM state it keeps inside the
    qcow2 (local hosts; None where that cannot be known).
    `description` is the snapshot's free text (vmfleet keeps its own notes there).
    """

    vm: str
    name: str
    created: datetime
    state: DomainState
    parent: str | None
    current: bool
    kind: Literal["internal", "external"]
    memory: bool
    description: str | None
    overlays: tuple[tuple[str, str], ...] = ()
    size_bytes: int | None = None

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(path for _target, path in self.overlays)
