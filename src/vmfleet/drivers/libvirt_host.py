"""The hypervisor seam: one libvirt host behind a typed, ownership-checking interface.

`LibvirtHost` wraps one libvirt connection (any URI: `qemu:///system`, `qemu+ssh://...`, and
`test:///default` in fast tests) and returns small frozen dataclasses, never libvirt objects.

Rules every method follows:

- Ownership first. A mutating call on a domain checks that it carries our metadata
  (`metadata.OwnerMetadata`); on a volume, that its name has our prefix (`vmf-`); on a
  network, that its `<metadata>` holds an element in our namespace. Otherwise
  `NotOwnedError`, before anything changes.
- No failure is swallowed. Every `libvirt.libvirtError` becomes a `HypervisorError` naming
  the host, the VM (when there is one) and what was being done; when the connection itself
  is gone it is a `HostUnreachableError`. The libvirt error stays chained as `__cause__`.
- Idempotent where the engine needs it: `start` on a running domain, `destroy` and
  `shutdown` on a stopped one do nothing; `undefine`, `delete_volume` and `remove_network`
  return False when there was nothing to remove.

Threads: one `LibvirtHost` may be shared by many worker threads. libvirt connections are
thread-safe for calls; this class only adds locks around the lazy connect and the KVM probe
cache. Check-then-act sequences (ownership check, then change) are not atomic across
threads or processes: two vmfleet workers must not operate on the same object at once,
which the engine's per-fleet lock guarantees.

Keepalive: for remote URIs (with a host name) the connection gets libvirt keepalive
messages, which need libvirt's event loop; `start_event_loop()` runs it in a daemon thread
and is called automatically for such URIs unless `keepalive=None`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import subprocess
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal, Self
from urllib.parse import urlsplit

import libvirt
import libvirt_qemu  # type: ignore[import-untyped]  # pyproject lists only libvirt.*

from vmfleet.drivers.domainxml import SnapshotConfig
from vmfleet.drivers.metadata import NAMESPACE, VOLUME_PREFIX, OwnerMetadata
from vmfleet.drivers.metadata import PREFIX as METADATA_PREFIX
from vmfleet.errors import (
    GuestError,
    HostUnreachableError,
    HypervisorError,
    NotOwnedError,
    OperationTimeout,
)

KiB = 1024
MiB = 1024 * KiB

DEFAULT_CONNECT_TIMEOUT = 15.0
DEFAULT_POOL_PATH = "/var/lib/libvirt/images"
PROBE_DONE_MARKER = "VMFLEET-PROBE-OK"
PROBE_COPY_ROUNDS = 4
_POLL_INTERVAL = 0.1
_UPLOAD_CHUNK = 256 * KiB


# ---------------------------------------------------------------------------------------------
# Typed results


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


_STATES = {
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


# ---------------------------------------------------------------------------------------------
# Process-wide libvirt setup

_setup_lock = threading.Lock()
_quiet = False
_event_thread: threading.Thread | None = None


def _silence_default_error_printing() -> None:
    """libvirt prints every error to stderr by default; we raise them instead."""
    global _quiet
    with _setup_lock:
        if not _quiet:
            libvirt.registerErrorHandler(_ignore_libvirt_report, None)
            _quiet = True


def _ignore_libvirt_report(_ctx: object, _err: object) -> None:
    """The report is also raised as libvirtError by the failing call, which we translate."""


def start_event_loop() -> None:
    """Run libvirt's default event loop in a daemon thread (once per process; idempotent).

    Needed for keepalive on remote connections and for libvirt event callbacks. Only
    connections opened after this call use it. A failure of the loop is raised in its
    thread (and printed by `threading.excepthook`); connections then stop detecting a dead
    peer, they do not fail.
    """
    global _event_thread
    with _setup_lock:
        if _event_thread is not None:
            return
        if libvirt.virEventRegisterDefaultImpl() < 0:
            raise HypervisorError("cannot register libvirt's default event loop")
        _event_thread = threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True)
        _event_thread.start()


def event_loop_running() -> bool:
    """True once `start_event_loop` has started the loop thread (and it has not died)."""
    return _event_thread is not None and _event_thread.is_alive()


def _run_event_loop() -> None:
    while True:
        if libvirt.virEventRunDefaultImpl() < 0:
            raise HypervisorError("libvirt's event loop failed; keepalive has stopped")


# ---------------------------------------------------------------------------------------------
# The host


class LibvirtHost:
    """One libvirt host, connected lazily on first use (or eagerly with `LibvirtHost.open`).

    `name` is how errors name the host (default: the URI). See the module docstring for
    ownership, error and threading rules.
    """

    def __init__(
        self,
        uri: str,
        *,
        name: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        keepalive: KeepAlive | None = KeepAlive(),
    ) -> None:
        self.uri = uri
        self.name = name or uri
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._conn: Any = None
        self._conn_lock = threading.Lock()
        self._kvm_lock = threading.Lock()
        self._kvm_usable: bool | None = None
        self._kvm_probe: BootProbe | None = None

    # -- connection ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        uri: str,
        *,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
        name: str | None = None,
        keepalive: KeepAlive | None = KeepAlive(),
    ) -> LibvirtHost:
        """Connect now; HostUnreachableError (host name + libvirt's message) when it fails.

        A dead local socket fails at once; an unanswering remote host fails after `timeout`
        seconds (the attempt keeps running in the background and is closed if it succeeds).
        """
        host = cls(uri, name=name, connect_timeout=timeout, keepalive=keepalive)
        host.connect()
        return host

    @property
    def remote(self) -> bool:
        """True when the URI names another machine (then keepalive applies)."""
        return bool(urlsplit(self.uri).hostname)

    def connect(self) -> None:
        """Open the connection if it is not open (or was lost); a no-op otherwise."""
        self._connection()

    def close(self) -> None:
        """Close the connection. Further calls reconnect, so closing twice is harmless.

        Close only when no other thread is in a call on this host: libvirt fails their calls.
        """
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError as err:
                raise self._error(err, doing="close connection") from err

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _connection(self) -> Any:
        with self._conn_lock:
            if self._conn is not None:
                if self._alive(self._conn):
                    return self._conn
                self._discard(self._conn)
                self._conn = None
            _silence_default_error_printing()
            use_keepalive = self._keepalive is not None and self.remote
            if use_keepalive:
                start_event_loop()
            conn = _open_with_timeout(self.uri, host=self.name, timeout=self._connect_timeout)
            if use_keepalive and self._keepalive is not None:
                self._set_keepalive(conn, self._keepalive)
            self._conn = conn
            return conn

    def _set_keepalive(self, conn: Any, keepalive: KeepAlive) -> None:
        try:
            conn.setKeepAlive(keepalive.interval, keepalive.count)
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                conn.close()
                raise HostUnreachableError(
                    f"cannot enable keepalive: {_message(err)}", host=self.name
                ) from err
            # A driver without keepalive (no network protocol) cannot lose its peer.

    @staticmethod
    def _discard(conn: Any) -> None:
        """Free a connection that already died; closing it can only report that it is dead."""
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()

    @staticmethod
    def _alive(conn: Any) -> bool:
        try:
            return bool(conn.isAlive())
        except libvirt.libvirtError:
            return False  # asking a broken connection fails: that is the answer "not alive"

    # -- errors -------------------------------------------------------------------------------

    def _error(
        self, err: libvirt.libvirtError, *, doing: str, vm: str | None = None
    ) -> HypervisorError:
        message = f"{doing}: {_message(err)}"
        conn = self._conn
        if conn is not None and not self._alive(conn):
            return HostUnreachableError(message + " (connection lost)", host=self.name, vm=vm)
        return HypervisorError(message, host=self.name, vm=vm)

    @contextlib.contextmanager
    def _call(self, doing: str, *, vm: str | None = None) -> Iterator[None]:
        try:
            yield
        except libvirt.libvirtError as err:
            raise self._error(err, doing=doing, vm=vm) from err

    # -- capabilities and the KVM probe -------------------------------------------------------

    def capabilities(self, *, probe_kvm: bool = True, pool: str = "default") -> HostCapabilities:
        """What the host is and can run; `kvm_usable` from the (cached) KVM probe.

        The first probe takes a few seconds and needs `pool` (see `probe_kvm`). With
        `probe_kvm=False` it is not run and `kvm_usable` is its cached answer, or None when
        it never ran.
        """
        conn = self._connection()
        with self._call("read capabilities"):
            caps = ET.fromstring(conn.getCapabilities())
            info = conn.getInfo()
            hostname = str(conn.getHostname())
            version = _version_string(int(conn.getLibVersion()))
        host_arch = caps.findtext("host/cpu/arch") or ""
        guests = tuple(self._guest_capability(g) for g in caps.findall("guest"))
        result = HostCapabilities(
            hostname=hostname,
            arch=host_arch,
            cpus=int(info[2]),
            memory_bytes=self._memory_bytes(fallback_mib=int(info[1])),
            guests=guests,
            kvm_usable=self._kvm_usable,
            libvirt_version=version,
        )
        if probe_kvm:
            usable = self._probe_kvm_cached(result, timeout=8.0, pool=pool)
            result = replace(result, kvm_usable=usable)
        return result

    def _memory_bytes(self, *, fallback_mib: int) -> int:
        """The host's total memory. Node info counts NUMA cells only, which misses memory
        hot-plugged outside them (seen on firecracker VMs), so ask for the memory stats."""
        conn = self._connection()
        try:
            stats = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise self._error(err, doing="read memory statistics") from err
            return fallback_mib * MiB  # a driver without memory stats (test): node info it is
        return int(stats["total"]) * KiB

    def _guest_capability(self, guest: ET.Element) -> GuestCapability:
        arch_el = guest.find("arch")
        arch = "" if arch_el is None else arch_el.get("name", "")
        types: list[str] = []
        machines: list[str] = []
        emulator = None
        if arch_el is not None:
            emulator = arch_el.findtext("emulator")
            for machine in arch_el.iter("machine"):
                if machine.text and machine.text not in machines:
                    machines.append(machine.text)
            types = [d.get("type", "") for d in arch_el.findall("domain")]
        os_type = guest.findtext("os_type") or ""
        firmware = self._firmware(arch=arch, virttype=types[0] if types else None, os_type=os_type)
        return GuestCapability(
            os_type=os_type,
            arch=arch,
            domain_types=tuple(types),
            machines=tuple(machines),
            emulator=emulator,
            firmware=firmware,
        )

    def _firmware(self, *, arch: str, virttype: str | None, os_type: str) -> tuple[str, ...]:
        if os_type != "hvm" or virttype is None:
            return ()
        conn = self._connection()
        try:
            xml = conn.getDomainCapabilities(None, arch, None, virttype, 0)
        except libvirt.libvirtError as err:
            if err.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                return ()  # the driver cannot say (test driver, exotic arch): nothing offered
            raise self._error(err, doing=f"read domain capabilities for {arch}") from err
        root = ET.fromstring(xml)
        return tuple(v.text or "" for v in root.findall("os/enum[@name='firmware']/value"))

    def probe_kvm(self, *, timeout: float = 8.0, pool: str = "default") -> bool:
        """Whether KVM really runs guests here (cached per host after the first answer).

        /dev/kvm can exist and still make guests crawl or hang (broken nested
        virtualisation: firmware runs, a kernel does not get anywhere), so this boots the probe
        payload (see `boot_probe`) as a `kvm` domain and needs it done within `timeout` s.
        False at once when the host offers no `kvm` domain type or is not x86_64 (the payload
        is x86-64 code). Uses `pool` for the payload's volume.
        """
        return self._probe_kvm_cached(
            self.capabilities(probe_kvm=False), timeout=timeout, pool=pool
        )

    def _probe_kvm_cached(self, caps: HostCapabilities, *, timeout: float, pool: str) -> bool:
        with self._kvm_lock:
            if self._kvm_usable is None:
                if caps.arch != "x86_64" or "kvm" not in caps.domain_types():
                    self._kvm_usable = False
                else:
                    probe = self.boot_probe(domain_type="kvm", timeout=timeout, pool=pool)
                    self._kvm_probe = probe
                    self._kvm_usable = probe.booted
            return self._kvm_usable

    @property
    def last_kvm_probe(self) -> BootProbe | None:
        """The probe behind the cached `kvm_usable` answer (None if none ran), to explain it."""
        return self._kvm_probe

    def boot_probe(
        self, *, domain_type: str, timeout: float = 8.0, pool: str = "default"
    ) -> BootProbe:
        """Boot the probe payload in a transient 64 MiB diskless x86_64 domain of `domain_type`.

        The payload (`probe_payload()`, a 16 KiB multiboot image) is uploaded to `pool` as a
        volume of ours and booted as the domain's `<kernel>`: it enters 64-bit long mode,
        copies memory (what a kernel's first second looks like) and prints PROBE_DONE_MARKER
        on the serial console, which is read through a libvirt console stream (so it works
        on remote hosts). `booted` is True when the marker arrived within `timeout` s.

        The domain (named `vmf-probe-<type>-<random>`, with our metadata, auto-destroyed if
        we lose the connection) and the volume are always removed before returning. A domain
        libvirt refuses to start (say, /dev/kvm not accessible) is a "no" with libvirt's
        message in `error`; a pool or connection failure raises.
        """
        token = uuid.uuid4().hex[:8]
        name = f"vmf-probe-{domain_type}-{token}"
        volume = f"{VOLUME_PREFIX}vmfleet-probe--{token}--kernel"
        with tempfile.TemporaryDirectory(prefix="vmf-probe-") as scratch:
            payload = Path(scratch) / "payload.bin"
            payload.write_bytes(probe_payload())
            kernel = self.upload_volume(pool, volume, payload, format="raw")
        try:
            return self._boot_probe(
                name=name, domain_type=domain_type, kernel=kernel.path, timeout=timeout
            )
        finally:
            self.delete_volume(pool, volume)

    def _boot_probe(self, *, name: str, domain_type: str, kernel: str, timeout: float) -> BootProbe:
        conn = self._connection()
        xml = _probe_domain_xml(name=name, domain_type=domain_type, kernel=kernel)
        started = time.monotonic()
        try:
            with self._call(f"start {domain_type} probe domain", vm=name):
                dom = conn.createXML(xml, libvirt.VIR_DOMAIN_START_AUTODESTROY)
        except HostUnreachableError:
            raise
        except HypervisorError as err:
            return BootProbe(
                domain_type=domain_type,
                booted=False,
                seconds=time.monotonic() - started,
                console="",
                error=str(err),
            )
        reader = _ConsoleReader(conn, dom, marker=PROBE_DONE_MARKER)
        try:
            with self._call("open the probe domain's console", vm=name):
                reader.start()
            booted = reader.found.wait(timeout)
            seconds = time.monotonic() - started
        finally:
            self._destroy_transient(dom, name=name)
            reader.stop()
        return BootProbe(
            domain_type=domain_type, booted=booted, seconds=seconds, console=reader.text()
        )

    def _destroy_transient(self, dom: Any, *, name: str) -> None:
        try:
            dom.destroy()
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise self._error(err, doing="destroy probe domain", vm=name) from err

    # -- domains: reading ---------------------------------------------------------------------

    def list_domains(self, *, fleet: str | None = None) -> list[DomainInfo]:
        """Every domain on the host, sorted by name; with `fleet`, only that fleet's own.

        A domain that disappears while being listed is left out (it no longer exists).
        """
        conn = self._connection()
        with self._call("list domains"):
            domains = conn.listAllDomains(0)
        found: list[DomainInfo] = []
        for dom in domains:
            info = self._domain_info_or_none(dom)
            if info is None:
                continue
            if fleet is not None and (info.owner is None or info.owner.fleet != fleet):
                continue
            found.append(info)
        return sorted(found, key=lambda d: d.name)

    def get_domain(self, name: str) -> DomainInfo | None:
        """One domain by name, or None when there is none of that name."""
        dom = self._lookup(name)
        return None if dom is None else self._domain_info_or_none(dom)

    def domain_xml(self, name: str, *, inactive: bool = False) -> str:
        """The domain's XML (live, or the persistent config with `inactive`); any domain."""
        dom = self._require_domain(name, doing="read domain XML")
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        with self._call("read domain XML", vm=name):
            return str(dom.XMLDesc(flags))

    def _lookup(self, name: str) -> Any | None:
        conn = self._connection()
        try:
            return conn.lookupByName(name)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise self._error(err, doing="look up domain", vm=name) from err

    def _require_domain(self, name: str, *, doing: str) -> Any:
        dom = self._lookup(name)
        if dom is None:
            raise HypervisorError(f"{doing}: no such domain", host=self.name, vm=name)
        return dom

    def _owned(self, name: str, *, doing: str) -> Any:
        """The domain, after checking it is ours; NotOwnedError (or no such domain) else."""
        dom = self._require_domain(name, doing=doing)
        with self._call(doing, vm=name):
            xml = dom.XMLDesc(0)
        if OwnerMetadata.from_domain_xml(xml) is None:
            raise NotOwnedError(
                f"{doing}: refused, the domain has no vmfleet metadata (vmfleet did not create it)",
                host=self.name,
                vm=name,
            )
        return dom

    def _domain_info_or_none(self, dom: Any) -> DomainInfo | None:
        try:
            return self._domain_info(dom)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None  # removed between listing and reading: it no longer exists
            raise self._error(err, doing="read domain", vm=_safe_name(dom)) from err

    def _domain_info(self, dom: Any) -> DomainInfo:
        name = str(dom.name())
        xml = dom.XMLDesc(0)
        root = ET.fromstring(xml)
        persistent = bool(dom.isPersistent())
        state_code, max_kib, mem_kib, vcpus, _cpu_time = dom.info()
        state = _STATES.get(state_code, DomainState.NOSTATE)
        max_vcpus = int(root.findtext("vcpu") or vcpus)
        uptime = None
        if state in (DomainState.RUNNING, DomainState.PAUSED, DomainState.BLOCKED):
            uptime = self._local_qemu_uptime(name)
        return DomainInfo(
            name=name,
            uuid=str(dom.UUIDString()),
            state=state,
            owner=OwnerMetadata.from_domain_xml(xml),
            vcpus=int(vcpus),
            max_vcpus=max_vcpus,
            memory_bytes=int(mem_kib) * KiB,
            max_memory_bytes=int(max_kib) * KiB,
            autostart=bool(dom.autostart()) if persistent else False,
            persistent=persistent,
            uptime_seconds=uptime,
        )

    def _local_qemu_uptime(self, name: str) -> float | None:
        """Seconds since the domain's QEMU process started, when we can see that process.

        Only for `qemu:///system` on this machine (pid file + /proc); None anywhere else and
        when the files cannot be read: uptime is a nicety, not something to fail over.
        """
        parts = urlsplit(self.uri)
        if parts.hostname or parts.scheme not in ("qemu", "qemu+unix") or parts.path != "/system":
            return None
        try:
            pid = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
            start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
            boot_uptime = float(Path("/proc/uptime").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return max(0.0, boot_uptime - start_ticks / os.sysconf("SC_CLK_TCK"))

    # -- domains: changing --------------------------------------------------------------------

    def define(self, xml: str) -> DomainInfo:
        """Define (or redefine) a persistent domain from XML carrying our metadata.

        The XML is validated against libvirt's schema. Redefining keeps the domain's UUID when
        the XML names none. Refuses with NotOwnedError when a domain of that name exists and
        is not ours, or belongs to another fleet. ValueError when the XML has no name or no
        vmfleet metadata (we would lose track of the domain).
        """
        name = _xml_name(xml, kind="domain")
        owner = OwnerMetadata.from_domain_xml(xml)
        if owner is None:
            raise ValueError(f"domain XML for {name!r} carries no vmfleet metadata")
        current = self.get_domain(name)
        if current is not None:
            self._owned(name, doing="define")
            theirs = current.owner.fleet if current.owner else None
            if theirs != owner.fleet:
                raise NotOwnedError(
                    f"define: refused, the domain belongs to fleet {theirs!r}, not {owner.fleet!r}",
                    host=self.name,
                    vm=name,
                )
            xml = _with_uuid(xml, current.uuid)
        conn = self._connection()
        with self._call("define", vm=name):
            dom = conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
            return self._domain_info(dom)

    def start(self, name: str) -> None:
        """Start a defined domain; nothing to do when it is already active."""
        dom = self._owned(name, doing="start")
        with self._call("start", vm=name):
            if not dom.isActive():
                dom.create()

    def shutdown(self, name: str, *, timeout: float, force_after: bool = True) -> ShutdownResult:
        """Ask the guest to power off (ACPI), wait up to `timeout` s, then destroy it.

        With `force_after=False` a guest still running after `timeout` raises
        OperationTimeout instead. A transient domain that vanishes on power-off counts as
        shut down.
        """
        dom = self._owned(name, doing="shut down")
        with self._call("shut down", vm=name):
            if not dom.isActive():
                return ShutdownResult.ALREADY_OFF
            dom.shutdown()
        if self._wait_inactive(dom, name=name, timeout=timeout):
            return ShutdownResult.GRACEFUL
        if not force_after:
            raise OperationTimeout(
                f"host {self.name}: vm {name}: still running {timeout} s after the shutdown request"
            )
        self._destroy_if_active(dom, name=name)
        return ShutdownResult.FORCED

    def _wait_inactive(self, dom: Any, *, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not dom.isActive():
                    return True
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return True  # a transient domain is gone once it is off
                raise self._error(err, doing="wait for shutdown", vm=name) from err
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_INTERVAL)

    def destroy(self, name: str) -> None:
        """Power a domain off at once (pull the plug); nothing to do when it is off."""
        dom = self._owned(name, doing="destroy")
        self._destroy_if_active(dom, name=name)

    def _destroy_if_active(self, dom: Any, *, name: str) -> None:
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError as err:
            code = err.get_error_code()
            if code == libvirt.VIR_ERR_NO_DOMAIN:
                return  # transient and already gone
            if code == libvirt.VIR_ERR_OPERATION_INVALID and not self._is_active(dom, name):
                return  # it went off by itself between the check and the destroy
            raise self._error(err, doing="destroy", vm=name) from err

    def _is_active(self, dom: Any, name: str) -> bool:
        with self._call("read state", vm=name):
            return bool(dom.isActive())

    def reboot(self, name: str) -> None:
        """Ask the guest to reboot (the hypervisor's default method)."""
        dom = self._owned(name, doing="reboot")
        with self._call("reboot", vm=name):
            dom.reboot(0)

    def suspend(self, name: str) -> None:
        """Pause a running domain's vCPUs (it keeps its memory)."""
        dom = self._owned(name, doing="suspend")
        with self._call("suspend", vm=name):
            dom.suspend()

    def resume(self, name: str) -> None:
        """Let a paused domain run again."""
        dom = self._owned(name, doing="resume")
        with self._call("resume", vm=name):
            dom.resume()

    def undefine(self, name: str) -> bool:
        """Remove a domain's definition with its managed save, snapshot/checkpoint metadata
        and NVRAM. False when there was no such domain.

        A running domain keeps running as a transient one until destroyed: call `destroy`
        first to remove it entirely. Volumes are not touched (see `delete_volume`).
        """
        if self._lookup(name) is None:
            return False
        dom = self._owned(name, doing="undefine")
        flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        )
        with self._call("undefine", vm=name):
            if _has_nvram(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)):
                flags |= libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            if self._has_checkpoints(dom, name=name):
                flags |= libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
            dom.undefineFlags(flags)
        return True

    def _has_checkpoints(self, dom: Any, *, name: str) -> bool:
        try:
            return bool(dom.listAllCheckpoints(0))
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                return False  # a driver without checkpoints has none to remove
            raise self._error(err, doing="list checkpoints", vm=name) from err

    def set_memory(
        self, name: str, mib: int, *, live: bool, config: bool, maximum: bool = False
    ) -> None:
        """Set the memory (MiB) of the running domain (`live`) and/or its config (`config`).

        With `maximum`, sets the maximum instead (config only; libvirt refuses it live).
        Raises ValueError when neither `live` nor `config` is asked.
        """
        flags = _affect_flags(live=live, config=config)
        dom = self._owned(name, doing="set memory")
        extra = libvirt.VIR_DOMAIN_MEM_MAXIMUM if maximum else 0
        with self._call(f"set memory to {mib} MiB", vm=name):
            for flag in flags:  # one call each: some drivers refuse LIVE|CONFIG together
                dom.setMemoryFlags(mib * 1024, flag | extra)

    def set_vcpus(
        self, name: str, count: int, *, live: bool, config: bool, maximum: bool = False
    ) -> None:
        """Set the vCPU count of the running domain and/or its config (`maximum`: the cap)."""
        flags = _affect_flags(live=live, config=config)
        dom = self._owned(name, doing="set vcpus")
        extra = libvirt.VIR_DOMAIN_VCPU_MAXIMUM if maximum else 0
        with self._call(f"set vcpus to {count}", vm=name):
            for flag in flags:
                dom.setVcpusFlags(count, flag | extra)

    def set_autostart(self, name: str, enabled: bool) -> None:
        """Whether the host starts the domain when libvirtd starts (persistent domains only)."""
        dom = self._owned(name, doing="set autostart")
        with self._call("set autostart", vm=name):
            dom.setAutostart(1 if enabled else 0)

    # -- storage ------------------------------------------------------------------------------

    def ensure_pool(
        self,
        name: str = "default",
        *,
        path: str = DEFAULT_POOL_PATH,
        define_if_missing: bool = False,
    ) -> PoolInfo:
        """Make a storage pool usable: start it if inactive; define it only when asked.

        A missing pool is defined as a `dir` pool at `path` (directory created, pool started
        and set to autostart) only with `define_if_missing`; otherwise HypervisorError.
        """
        conn = self._connection()
        pool = self._pool_or_none(name)
        if pool is None:
            if not define_if_missing:
                raise HypervisorError(f"storage pool {name!r} does not exist", host=self.name)
            with self._call(f"define storage pool {name!r} at {path}"):
                pool = conn.storagePoolDefineXML(_dir_pool_xml(name=name, path=path), 0)
                pool.build(0)
                pool.setAutostart(1)
        with self._call(f"start storage pool {name!r}"):
            if not pool.isActive():
                pool.create(0)
        return self._pool_info(pool)

    def pool_info(self, name: str, *, refresh: bool = False) -> PoolInfo:
        """Sizes of a pool; `refresh` rescans it first (fails while uploads are running)."""
        pool = self._pool(name)
        if refresh:
            self._refresh_pool(pool, name=name)
        return self._pool_info(pool)

    def _refresh_pool(self, pool: Any, *, name: str, wait: float = 60.0) -> None:
        """Rescan a pool. libvirt refuses while an upload into it runs (another vmfleet run
        on the host): wait for it, up to `wait` s, then report the refusal."""
        deadline = time.monotonic() + wait
        while True:
            try:
                pool.refresh(0)
                return
            except libvirt.libvirtError as err:
                busy = "asynchronous jobs running" in _message(err)
                if not busy or time.monotonic() > deadline:
                    raise self._error(err, doing=f"refresh storage pool {name!r}") from err
            time.sleep(0.5)

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """Every volume in a pool (ours or not), sorted by name."""
        handle = self._pool(pool)
        with self._call(f"list volumes of pool {pool!r}"):
            volumes = handle.listAllVolumes(0)
        found: list[VolumeInfo] = []
        for vol in volumes:
            try:
                found.append(_volume_info(vol, pool=pool))
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                    continue  # deleted while we listed: it no longer exists
                raise self._error(err, doing=f"read a volume of pool {pool!r}") from err
        return sorted(found, key=lambda v: v.name)

    def get_volume(self, pool: str, name: str) -> VolumeInfo | None:
        """One volume, or None when the pool has no volume of that name."""
        vol = self._volume_or_none(self._pool(pool), pool=pool, name=name)
        if vol is None:
            return None
        with self._call(f"read volume {name!r}"):
            return _volume_info(vol, pool=pool)

    def volume_path(self, pool: str, name: str) -> str:
        """The file (or device) path of a volume; HypervisorError when there is none."""
        vol = self._volume(pool, name)
        with self._call(f"read path of volume {name!r}"):
            return str(vol.path())

    def create_volume(self, pool: str, xml: str) -> VolumeInfo:
        """Create a volume from XML; its name must have our prefix (else ValueError).

        The pool must have room first: the bytes checked are `<allocation>` (which libvirt
        defaults to the capacity) for raw volumes, and only an explicit `<allocation>` for
        formats that grow on demand (qcow2). Too little room → HypervisorError with sizes.
        """
        name = _xml_name(xml, kind="volume")
        _require_our_volume_name(name)
        handle = self._pool(pool)
        self._require_space(handle, pool=pool, needed=_volume_bytes_needed(xml), what=name)
        with self._call(f"create volume {name!r} in pool {pool!r}"):
            vol = handle.createXML(xml, 0)
            return _volume_info(vol, pool=pool)

    def upload_volume(
        self, pool: str, name: str, local_path: str | os.PathLike[str], *, format: str
    ) -> VolumeInfo:
        """Copy a local image file into a new volume through a libvirt stream.

        Works for remote hosts too. The volume is created as a raw file of the file's size,
        then its bytes are sent; a dir (or fs) pool then detects the image's own format, which
        must equal `format` (else HypervisorError), so other pool types hold raw images only.
        On any failure the new volume is deleted again and the error raised. Refuses names
        without our prefix (ValueError) and pools without room for the file (HypervisorError
        with sizes).
        """
        _require_our_volume_name(name)
        source = Path(local_path)
        try:
            size = source.stat().st_size
        except OSError as err:
            raise HypervisorError(
                f"upload {source}: cannot read it: {err.strerror or err}", host=self.name
            ) from err
        handle = self._pool(pool)
        self._require_space(handle, pool=pool, needed=size, what=name)
        conn = self._connection()
        with self._call(f"create volume {name!r} in pool {pool!r}"):
            vol = handle.createXML(_upload_volume_xml(name=name, size=size), 0)
        try:
            with self._call(f"upload {source} to volume {name!r}"):
                self._send_file(conn, vol, source, size=size)
            with self._call(f"read uploaded volume {name!r}"):
                info = self._settled_volume_info(vol, pool=pool, want_format=format)
        except BaseException as failure:
            self._delete_after_failure(vol, name=name, failure=failure)
            raise
        return info

    @staticmethod
    def _send_file(conn: Any, vol: Any, source: Path, *, size: int) -> None:
        stream = conn.newStream(0)
        try:
            vol.upload(stream, 0, size, 0)
            with source.open("rb") as data:
                stream.sendAll(_read_chunk, data)
            stream.finish()
        except BaseException:
            # The stream is unusable now; aborting it only frees it, the failure is re-raised.
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            raise

    def _settled_volume_info(self, vol: Any, *, pool: str, want_format: str) -> VolumeInfo:
        # After an upload libvirt refreshes the pool in a background thread; until it has,
        # the volume may still show the raw placeholder it was created as.
        deadline = time.monotonic() + 10.0
        while True:
            vol_info = _volume_info(vol, pool=pool)
            if vol_info.format == want_format:
                return vol_info
            if time.monotonic() >= deadline:
                raise HypervisorError(
                    f"uploaded volume {vol_info.name!r} reads as format {vol_info.format!r}, "
                    f"expected {want_format!r}",
                    host=self.name,
                )
            time.sleep(_POLL_INTERVAL)

    def _delete_after_failure(self, vol: Any, *, name: str, failure: BaseException) -> None:
        try:
            vol.delete(0)
        except libvirt.libvirtError as err:
            failure.add_note(
                f"host {self.name}: also failed to delete the partial volume {name!r}: "
                f"{_message(err)}"
            )

    def delete_volume(self, pool: str, name: str) -> bool:
        """Delete one of our volumes; False when it was not there. Others: NotOwnedError."""
        if not name.startswith(VOLUME_PREFIX):
            raise NotOwnedError(
                f"delete volume {name!r}: refused, its name lacks the {VOLUME_PREFIX!r} prefix "
                "(vmfleet did not create it)",
                host=self.name,
            )
        vol = self._volume_or_none(self._pool(pool), pool=pool, name=name)
        if vol is None:
            return False
        with self._call(f"delete volume {name!r} from pool {pool!r}"):
            vol.delete(0)
        return True

    def resize_volume(self, pool: str, name: str, capacity: int) -> VolumeInfo:
        """Grow one of our volumes to `capacity` bytes (libvirt refuses to shrink)."""
        if not name.startswith(VOLUME_PREFIX):
            raise NotOwnedError(
                f"resize volume {name!r}: refused, its name lacks the {VOLUME_PREFIX!r} prefix",
                host=self.name,
            )
        vol = self._volume(pool, name)
        with self._call(f"resize volume {name!r} to {capacity} bytes"):
            vol.resize(capacity, 0)
            return _volume_info(vol, pool=pool)

    def _pool_or_none(self, name: str) -> Any | None:
        conn = self._connection()
        try:
            return conn.storagePoolLookupByName(name)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                return None
            raise self._error(err, doing=f"look up storage pool {name!r}") from err

    def _pool(self, name: str) -> Any:
        pool = self._pool_or_none(name)
        if pool is None:
            raise HypervisorError(f"storage pool {name!r} does not exist", host=self.name)
        return pool

    def _pool_info(self, pool: Any) -> PoolInfo:
        with self._call("read storage pool"):
            name = str(pool.name())
            state, capacity, allocation, available = pool.info()
            root = ET.fromstring(pool.XMLDesc(0))
            autostart = bool(pool.autostart())
        return PoolInfo(
            name=name,
            path=root.findtext("target/path"),
            capacity=int(capacity),
            allocation=int(allocation),
            available=int(available),
            active=state == libvirt.VIR_STORAGE_POOL_RUNNING,
            autostart=autostart,
        )

    def _volume_or_none(self, handle: Any, *, pool: str, name: str) -> Any | None:
        try:
            return handle.storageVolLookupByName(name)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise self._error(err, doing=f"look up volume {name!r} in pool {pool!r}") from err

    def _volume(self, pool: str, name: str) -> Any:
        vol = self._volume_or_none(self._pool(pool), pool=pool, name=name)
        if vol is None:
            raise HypervisorError(f"storage pool {pool!r} has no volume {name!r}", host=self.name)
        return vol

    def _require_space(self, handle: Any, *, pool: str, needed: int, what: str) -> None:
        """HypervisorError with the sizes when the pool has fewer than `needed` bytes free."""
        info = self._pool_info(handle)
        if needed > info.available:
            raise HypervisorError(
                f"storage pool {pool!r} is too full for {what}: it needs {_size_text(needed)}, "
                f"the pool has {_size_text(info.available)} available "
                f"(capacity {_size_text(info.capacity)}, allocated {_size_text(info.allocation)})",
                host=self.name,
            )

    # -- networks -----------------------------------------------------------------------------

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
        name = _xml_name(xml, kind="network")
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

    # -- guest channel ------------------------------------------------------------------------

    def agent_command(
        self, name: str, command: Mapping[str, Any] | str, *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send one QEMU guest agent command (e.g. `{"execute": "guest-info"}`) to our domain.

        Returns the agent's whole JSON reply (`{"return": ...}`). An agent that is not
        connected or does not answer within `timeout` s raises GuestError; a domain that is not
        ours NotOwnedError; anything else from libvirt HypervisorError.
        """
        self._owned(name, doing="guest agent command")
        return self._agent(name, command, timeout=timeout)

    def agent_ping(self, name: str, *, timeout: float = 5.0) -> bool:
        """True when the guest agent answers `guest-ping`; False when the domain is off, has
        no agent channel, or the agent does not answer. Other failures raise. Any domain: a
        ping changes nothing."""
        try:
            self._agent(name, {"execute": "guest-ping"}, timeout=timeout)
        except GuestError:
            return False
        except HypervisorError as err:
            cause = err.__cause__
            if isinstance(cause, libvirt.libvirtError) and cause.get_error_code() in (
                libvirt.VIR_ERR_OPERATION_INVALID,  # domain is not running
                libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,  # no agent channel configured
                libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
            ):
                return False
            raise
        return True

    def _agent(
        self, name: str, command: Mapping[str, Any] | str, *, timeout: float
    ) -> dict[str, Any]:
        dom = self._require_domain(name, doing="guest agent command")
        text = command if isinstance(command, str) else json.dumps(dict(command))
        seconds = max(1, int(timeout + 0.999))
        try:
            reply = libvirt_qemu.qemuAgentCommand(dom, text, seconds, 0)
        except libvirt.libvirtError as err:
            if err.get_error_code() in (
                libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                libvirt.VIR_ERR_AGENT_UNSYNCED,
            ):
                raise GuestError(
                    f"guest agent did not answer within {seconds} s on host {self.name}: "
                    f"{_message(err)}",
                    vm=name,
                ) from err
            raise self._error(err, doing="guest agent command", vm=name) from err
        try:
            parsed = json.loads(reply) if reply else {}
        except ValueError as err:
            raise GuestError(f"guest agent replied with invalid JSON: {reply!r}", vm=name) from err
        if not isinstance(parsed, dict):
            raise GuestError(f"guest agent replied with non-object JSON: {reply!r}", vm=name)
        return parsed

    def interface_addresses(
        self, name: str, *, source: Literal["lease", "agent"] = "lease"
    ) -> dict[str, list[str]]:
        """IP addresses of a domain's NICs by MAC, from DHCP leases or the guest agent.

        Interfaces without a MAC (the agent's loopback) are left out. Any domain.
        """
        flag = {
            "lease": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
            "agent": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
        }[source]
        dom = self._require_domain(name, doing="read interface addresses")
        with self._call(f"read interface addresses ({source})", vm=name):
            raw = dom.interfaceAddresses(flag, 0) or {}
        result: dict[str, list[str]] = {}
        for iface in raw.values():
            mac = iface.get("hwaddr")
            if not mac or mac == "00:00:00:00:00:00":
                continue
            addrs = [str(a["addr"]) for a in iface.get("addrs") or []]
            result.setdefault(str(mac).lower(), []).extend(addrs)
        return result

    # -- snapshots ----------------------------------------------------------------------------
    #
    # Internal snapshots live inside the qcow2 disks (with the RAM state of a running domain);
    # external ones are disk-only overlays: the disk's writes go to a new file from then on.
    # libvirt 9.0 can neither revert to nor delete an external snapshot; vmfleet does both for
    # the newest one (see `snapshot_revert` and `snapshot_delete`). Every libvirt call that
    # can hang (a snapshot, a revert, a block commit) runs in a worker thread with a deadline.

    def snapshot_create(self, name: str, config: SnapshotConfig, *, timeout: float) -> SnapshotInfo:
        """Take a snapshot of our domain; OperationTimeout (naming the VM) after `timeout` s.

        On a timeout the domain is resumed if the call left it paused, and a snapshot that
        libvirt still finishes later is deleted. `VMFLEET_FAULT_SNAPSHOT_DELAY` (seconds, for
        tests) delays the call, to make a hang on purpose.
        """
        dom = self._owned(name, doing="snapshot create")
        was_paused = self._domain_state(dom, name) is DomainState.PAUSED
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        if config.disk_only:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        xml = config.to_xml()
        delay = float(os.environ.get("VMFLEET_FAULT_SNAPSHOT_DELAY", "0") or 0)

        given_up = threading.Event()

        def call() -> Any:
            if delay:
                time.sleep(delay)
            if given_up.is_set():
                return None  # the injected hang ended after the caller gave up
            return dom.snapshotCreateXML(xml, flags)

        def late(snap: Any) -> None:
            # libvirt finished after all: take the internal snapshot away again (an
            # external one has switched the disks to its overlays, so it stays)
            with contextlib.suppress(libvirt.libvirtError):
                if snap is not None and not config.disk_only:
                    snap.delete(0)

        try:
            snap = _call_with_deadline(call, timeout=timeout, on_late_result=late)
        except TimeoutError:
            given_up.set()
            note = self._resume_after_timeout(dom, name=name, was_paused=was_paused)
            raise OperationTimeout(
                f"vm {name}: snapshot {config.name!r} did not finish within {timeout:g} s on "
                f"host {self.name}; {note}"
            ) from None
        except libvirt.libvirtError as err:
            raise self._error(err, doing=f"snapshot create {config.name!r}", vm=name) from err
        with self._call("read snapshot", vm=name):
            return _snapshot_info(name, snap, current=True, size=self._snapshot_size(snap))

    def _resume_after_timeout(self, dom: Any, *, name: str, was_paused: bool) -> str:
        with contextlib.suppress(libvirt.libvirtError):
            dom.abortJob()  # a disk-only snapshot's job can be aborted; savevm cannot
        if was_paused:
            return "the VM stays paused, as it was"
        try:
            if self._domain_state(dom, name) is DomainState.PAUSED:
                dom.resume()
                return "the VM was resumed"
        except (libvirt.libvirtError, HypervisorError) as err:
            return f"resuming the VM failed too: {err}"
        return "the VM kept running"

    def _domain_state(self, dom: Any, name: str) -> DomainState:
        with self._call("read state", vm=name):
            code, _reason = dom.state(0)
        return _STATES.get(code, DomainState.NOSTATE)

    def list_snapshots(self, name: str) -> list[SnapshotInfo]:
        """A domain's snapshots, oldest first, as libvirt keeps them (any domain)."""
        dom = self._require_domain(name, doing="list snapshots")
        with self._call("list snapshots", vm=name):
            found = [
                _snapshot_info(name, snap, current=bool(snap.isCurrent(0)), size=None)
                for snap in dom.listAllSnapshots(0)
            ]
        if any(s.files for s in found):
            self._refresh_pools()  # libvirt wrote the overlays behind the pools' backs
        ram = self._internal_state_sizes(dom, name=name) if any(s.memory for s in found) else {}
        sized = [
            replace(s, size_bytes=self._files_size(s.files) if s.files else ram.get(s.name))
            for s in found
        ]
        return sorted(sized, key=lambda s: (s.created, s.name))

    def _internal_state_sizes(self, dom: Any, *, name: str) -> dict[str, int]:
        """Bytes of RAM state each internal snapshot keeps in the disks (`qemu-img info`),
        on a local host; empty where that cannot be read (a remote host, no file disks)."""
        if self.remote:
            return {}
        with self._call("read domain XML", vm=name):
            root = ET.fromstring(dom.XMLDesc(0))
        sizes: dict[str, int] = {}
        for disk in root.iterfind("devices/disk"):
            source = disk.find("source")
            path = None if source is None else source.get("file")
            if path is None and source is not None and source.get("pool") and source.get("volume"):
                path = self.volume_path(str(source.get("pool")), str(source.get("volume")))
            if path is None or disk.find("readonly") is not None:
                continue
            done = subprocess.run(
                ["qemu-img", "info", "-U", "--output=json", path],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode:
                continue  # a disk qemu-img cannot read has no size to show; nothing else
            for snap in json.loads(done.stdout).get("snapshots") or []:
                key = str(snap.get("name"))
                sizes[key] = sizes.get(key, 0) + int(snap.get("vm-state-size") or 0)
        return sizes

    def _snapshot_size(self, snap: Any) -> int | None:
        info = _snapshot_info("", snap, current=True, size=None)
        return self._files_size(info.files) if info.files else None

    def _files_size(self, paths: tuple[str, ...]) -> int | None:
        """Bytes the overlay files take on the host (allocation), None when unreadable."""
        total = 0
        for path in paths:
            vol = self._volume_by_path(path, refresh=False)
            if vol is None:
                return None
            with self._call(f"read volume {path}"):
                total += int(vol.info()[2])
        return total

    def snapshot_revert(
        self, name: str, snapshot: str, *, state: DomainState | None, timeout: float
    ) -> None:
        """Bring our domain back to `snapshot`, then to `state` (running, paused or shutoff;
        None: the state the snapshot recorded).

        An external snapshot can be reverted to only while it is the newest one (its overlays
        are the disks in use): the overlays are emptied again and the domain is started anew
        when `state` is running (a disk-only snapshot holds no RAM).
        """
        dom = self._owned(name, doing="snapshot revert")
        snap = self._snapshot(dom, name=name, snapshot=snapshot)
        with self._call("read snapshot", vm=name):
            info = _snapshot_info(name, snap, current=bool(snap.isCurrent(0)), size=None)
        wanted = state or info.state
        if info.kind == "external":
            self._revert_external(dom, name=name, info=info, snap=snap, state=wanted)
            return
        flags = 0
        if wanted is DomainState.RUNNING:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING
            if not info.memory:
                flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE
        elif wanted is DomainState.PAUSED:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED
        try:
            _call_with_deadline(lambda: dom.revertToSnapshot(snap, flags), timeout=timeout)
        except TimeoutError:
            raise OperationTimeout(
                f"vm {name}: revert to snapshot {snapshot!r} did not finish within "
                f"{timeout:g} s on host {self.name}"
            ) from None
        except libvirt.libvirtError as err:
            raise self._error(err, doing=f"revert to snapshot {snapshot!r}", vm=name) from err
        if wanted is DomainState.SHUTOFF and self._is_active(dom, name):
            self._destroy_if_active(dom, name=name)

    def _revert_external(
        self, dom: Any, *, name: str, info: SnapshotInfo, snap: Any, state: DomainState
    ) -> None:
        if not info.current:
            raise HypervisorError(
                f"revert to external snapshot {info.name!r}: only the newest external snapshot "
                "can be reverted to (libvirt 9.0 cannot revert external snapshots; vmfleet "
                "empties the newest overlays); delete the newer snapshots first",
                host=self.name,
                vm=name,
            )
        self._destroy_if_active(dom, name=name)
        for _target, overlay in info.overlays:
            self._recreate_overlay(overlay, backing=self._backing_of(overlay, vm=name), vm=name)
        if state in (DomainState.RUNNING, DomainState.PAUSED):
            flags = libvirt.VIR_DOMAIN_START_PAUSED if state is DomainState.PAUSED else 0
            with self._call("start after revert", vm=name):
                dom.createWithFlags(flags)

    def _backing_of(self, path: str, *, vm: str) -> str:
        """The backing file of an overlay in a pool (the image it was made on top of)."""
        vol = self._volume_by_path(path, refresh=True)
        if vol is None:
            raise HypervisorError(f"overlay {path} is not in any pool", host=self.name, vm=vm)
        with self._call(f"read volume {path}", vm=vm):
            backing = ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path")
        if not backing:
            raise HypervisorError(f"overlay {path} has no backing file", host=self.name, vm=vm)
        return backing

    def _recreate_overlay(self, overlay: str, *, backing: str, vm: str) -> None:
        """Replace `overlay` by an empty qcow2 over `backing` (same name, same pool)."""
        _require_our_file(overlay, host=self.name, vm=vm)
        vol = self._volume_by_path(overlay, refresh=True)
        if vol is None:
            raise HypervisorError(f"overlay {overlay} is not in any pool", host=self.name, vm=vm)
        with self._call(f"recreate overlay {overlay}", vm=vm):
            pool = vol.storagePoolLookupByVolume()
            capacity = int(vol.info()[1])
            vol.delete(0)
            pool.createXML(
                _overlay_volume_xml(name=Path(overlay).name, capacity=capacity, backing=backing),
                0,
            )

    def snapshot_delete(self, name: str, snapshot: str, *, timeout: float) -> list[str]:
        """Delete a snapshot and free its space; returns the overlay files removed.

        Internal: libvirt deletes it from the qcow2 disks. External (libvirt 9.0 cannot): each
        overlay is merged into the file below it — a live block commit for an active domain
        (with a pivot when it is the disk in use; libvirt rebases a newer overlay on top),
        `qemu-img commit` on a local host for one that is off (then a newer overlay is
        rebased, or the disk points at the file below again) — and the overlay file goes.
        Newer snapshots stay valid.
        """
        dom = self._owned(name, doing="snapshot delete")
        snap = self._snapshot(dom, name=name, snapshot=snapshot)
        with self._call("read snapshot", vm=name):
            info = _snapshot_info(name, snap, current=bool(snap.isCurrent(0)), size=None)
        if info.kind == "internal":
            try:
                _call_with_deadline(lambda: snap.delete(0), timeout=timeout)
            except TimeoutError:
                raise OperationTimeout(
                    f"vm {name}: deleting snapshot {snapshot!r} did not finish within "
                    f"{timeout:g} s on host {self.name}"
                ) from None
            except libvirt.libvirtError as err:
                raise self._error(err, doing=f"delete snapshot {snapshot!r}", vm=name) from err
            return []
        active = self._active_disk_files(dom, name=name)
        for target, overlay in info.overlays:
            _require_our_file(overlay, host=self.name, vm=name)
            backing = self._backing_of(overlay, vm=name)
            is_active = active.get(target) == overlay
            if self._is_active(dom, name):
                self._commit_live(
                    dom, name=name, target=target, top=overlay, active=is_active, timeout=timeout
                )
            elif is_active:
                self._qemu_img(["commit", "-q", overlay], vm=name)
                self._point_disk_at(dom, name=name, target=target, path=backing)
            else:
                self._qemu_img(["commit", "-q", overlay], vm=name)
                for child in self._children_of(overlay, vm=name):
                    self._qemu_img(["rebase", "-u", "-F", "qcow2", "-b", backing, child], vm=name)
        with self._call(f"delete snapshot {snapshot!r} metadata", vm=name):
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        return [path for _t, path in info.overlays if self.delete_file_volume(path, vm=name)]

    def _active_disk_files(self, dom: Any, *, name: str) -> dict[str, str]:
        """Disk target -> the file it writes to now (file-backed disks only)."""
        with self._call("read domain XML", vm=name):
            root = ET.fromstring(dom.XMLDesc(0))
        found = {}
        for disk in root.iterfind("devices/disk"):
            target, source = disk.find("target"), disk.find("source")
            if target is not None and source is not None and source.get("file"):
                found[str(target.get("dev"))] = str(source.get("file"))
        return found

    def _children_of(self, overlay: str, *, vm: str) -> list[str]:
        """The other snapshot overlays that use `overlay` as their backing file."""
        return [
            path
            for info in self.list_snapshots(vm)
            for path in info.files
            if path != overlay and self._backing_of(path, vm=vm) == overlay
        ]

    def _commit_live(
        self, dom: Any, *, name: str, target: str, top: str, active: bool, timeout: float
    ) -> None:
        """Merge an overlay of a running disk into its backing file (and pivot when it is the
        active layer); libvirt rebases whatever sat on top of it."""
        flags = libvirt.VIR_DOMAIN_BLOCK_COMMIT_SHALLOW
        if active:
            flags |= libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE
        with self._call(f"block commit {target}", vm=name):
            dom.blockCommit(target, None, None if active else top, 0, flags)
        deadline = time.monotonic() + timeout
        while True:
            with self._call(f"block job {target}", vm=name):
                job = dom.blockJobInfo(target, 0)
            if not job and not active:
                return  # a non-active commit ends by itself
            if active and job and job.get("end", 0) and job.get("cur") == job.get("end"):
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.blockJobAbort(target, 0)
                raise OperationTimeout(
                    f"vm {name}: block commit of {target} did not finish within {timeout:g} s "
                    f"on host {self.name}; it was cancelled, the snapshot is kept"
                )
            time.sleep(_POLL_INTERVAL)
        with self._call(f"pivot {target}", vm=name):
            dom.blockJobAbort(target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
        while time.monotonic() < deadline:  # the pivot finishes asynchronously
            with self._call(f"block job {target}", vm=name):
                if not dom.blockJobInfo(target, 0):
                    return
            time.sleep(_POLL_INTERVAL)

    def _qemu_img(self, args: list[str], *, vm: str) -> None:
        """qemu-img on this machine, for changes to the disks of a domain that is off."""
        if self.remote:
            raise HypervisorError(
                f"qemu-img {args[0]} is needed while the VM is off, and the host is remote; "
                "start the VM and try again (libvirt then does it live)",
                host=self.name,
                vm=vm,
            )
        done = subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)
        if done.returncode:
            raise HypervisorError(
                f"qemu-img {' '.join(args)}: {done.stderr.strip()}", host=self.name, vm=vm
            )

    def _point_disk_at(self, dom: Any, *, name: str, target: str, path: str) -> None:
        """Redefine the (shut off) domain with disk `target` reading and writing `path`."""
        with self._call("read domain XML", vm=name):
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        root = ET.fromstring(xml)
        for disk in root.iterfind("devices/disk"):
            if disk.find(f"target[@dev='{target}']") is None:
                continue
            disk.set("type", "file")
            for old in [*disk.findall("source"), *disk.findall("backingStore")]:
                disk.remove(old)
            position = 1 if disk.find("driver") is not None else 0
            disk.insert(position, ET.Element("source", file=path))
        ET.register_namespace(METADATA_PREFIX, NAMESPACE)
        with self._call("redefine after commit", vm=name):
            self._connection().defineXML(ET.tostring(root, encoding="unicode"))

    def _snapshot(self, dom: Any, *, name: str, snapshot: str) -> Any:
        try:
            return dom.snapshotLookupByName(snapshot, 0)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                raise HypervisorError(f"no snapshot {snapshot!r}", host=self.name, vm=name) from err
            raise self._error(err, doing=f"look up snapshot {snapshot!r}", vm=name) from err

    def snapshot_files(self, name: str) -> list[str]:
        """Every overlay file the domain's external snapshots made (for removing the VM)."""
        files: list[str] = []
        for info in self.list_snapshots(name):
            files += [path for path in info.files if path not in files]
        return files

    def delete_file_volume(self, path: str, *, vm: str | None = None) -> bool:
        """Delete a file in a pool by its path (a snapshot overlay libvirt wrote there).

        Only files named with our prefix; False when no pool holds it.
        """
        _require_our_file(path, host=self.name, vm=vm)
        vol = self._volume_by_path(path, refresh=True)
        if vol is None:
            return False
        with self._call(f"delete {path}", vm=vm):
            vol.delete(0)
        return True

    def _refresh_pools(self, directory: str | None = None) -> None:
        """Let the pools (or the one in `directory`) see files written outside them."""
        conn = self._connection()
        with self._call("list pools"):
            pools = conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
            found = [(p, ET.fromstring(p.XMLDesc(0)).findtext("target/path") or "") for p in pools]
        for pool, where in found:
            if directory is None or where == directory:
                self._refresh_pool(pool, name=where)

    def _volume_by_path(self, path: str, *, refresh: bool) -> Any | None:
        conn = self._connection()
        if refresh:
            self._refresh_pools(str(Path(path).parent))
        try:
            return conn.storageVolLookupByPath(path)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise self._error(err, doing=f"look up volume {path}") from err

    def fsfreeze(self, name: str, *, timeout: float = 10.0) -> int:
        """Freeze the guest's filesystems through its agent; the number frozen."""
        reply = self.agent_command(name, {"execute": "guest-fsfreeze-freeze"}, timeout=timeout)
        return int(reply.get("return", 0))

    def fsthaw(self, name: str, *, timeout: float = 10.0) -> int:
        """Thaw the guest's filesystems through its agent; the number thawed."""
        reply = self.agent_command(name, {"execute": "guest-fsfreeze-thaw"}, timeout=timeout)
        return int(reply.get("return", 0))


# ---------------------------------------------------------------------------------------------
# Helpers (pure)


def _message(err: libvirt.libvirtError) -> str:
    return str(err.get_error_message() or err)


def _safe_name(dom: Any) -> str | None:
    try:
        return str(dom.name())
    except libvirt.libvirtError:
        return None  # only used to decorate an error that is already being raised


def _call_with_deadline(
    call: Callable[[], Any],
    *,
    timeout: float,
    on_late_result: Callable[[Any], None] | None = None,
) -> Any:
    """Run a libvirt call in a helper thread; TimeoutError when it has not returned in time.

    The call cannot be killed: it goes on in the background. `on_late_result` gets its
    result should it still succeed after we gave up (to undo it).
    """
    done = threading.Event()
    lock = threading.Lock()
    outcome: list[tuple[bool, Any]] = []
    abandoned = False

    def attempt() -> None:
        try:
            result: tuple[bool, Any] = (True, call())
        except BaseException as err:  # handed to the caller's thread, re-raised there
            result = (False, err)
        with lock:
            if abandoned:
                if result[0] and on_late_result is not None:
                    on_late_result(result[1])
                return
            outcome.append(result)
            done.set()

    threading.Thread(target=attempt, name="libvirt-deadline", daemon=True).start()
    if not done.wait(timeout):
        with lock:
            if not done.is_set():
                abandoned = True
                raise TimeoutError
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


_DISK_SNAPSHOT_STATE = re.compile(r"\bstate=(running|paused|shutoff)\b")


def _snapshot_info(vm: str, snap: Any, *, current: bool, size: int | None) -> SnapshotInfo:
    root = ET.fromstring(snap.getXMLDesc(0))
    description = root.findtext("description")
    raw_state = root.findtext("state") or "nostate"
    if raw_state == "disk-snapshot":
        noted = _DISK_SNAPSHOT_STATE.search(description or "")
        raw_state = noted.group(1) if noted else "running"
    try:
        state = DomainState(raw_state)
    except ValueError:
        state = DomainState.NOSTATE
    overlays = tuple(
        (str(disk.get("name")), str(source.get("file")))
        for disk in root.iterfind("disks/disk")
        if disk.get("snapshot") == "external"
        and (source := disk.find("source")) is not None
        and source.get("file")
    )
    memory = root.find("memory")
    return SnapshotInfo(
        vm=vm,
        name=root.findtext("name") or "",
        created=datetime.fromtimestamp(int(root.findtext("creationTime") or 0), tz=UTC),
        state=state,
        parent=root.findtext("parent/name"),
        current=current,
        kind="external" if overlays else "internal",
        memory=memory is not None and memory.get("snapshot") == "internal",
        description=description,
        overlays=overlays,
        size_bytes=size,
    )


def _require_our_file(path: str, *, host: str, vm: str | None) -> None:
    if not Path(path).name.startswith(VOLUME_PREFIX):
        raise NotOwnedError(
            f"refused to change {path}: its name lacks the {VOLUME_PREFIX!r} prefix "
            "(vmfleet did not create it)",
            host=host,
            vm=vm,
        )


def _overlay_volume_xml(*, name: str, capacity: int, backing: str) -> str:
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
    ET.SubElement(ET.SubElement(vol, "target"), "format", type="qcow2")
    store = ET.SubElement(vol, "backingStore")
    ET.SubElement(store, "path").text = backing
    ET.SubElement(store, "format", type="qcow2")
    return ET.tostring(vol, encoding="unicode")


def _version_string(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def _size_text(size: int) -> str:
    """Bytes, with a binary-unit rendering for people: `1048576 bytes (1.0 MiB)`."""
    value, unit = float(size), "bytes"
    for next_unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{size} bytes" if unit == "bytes" else f"{size} bytes ({value:.1f} {unit})"


def _open_with_timeout(uri: str, *, host: str, timeout: float) -> Any:
    """libvirt.open in a helper thread, so an unanswering host cannot block us forever."""
    done = threading.Event()
    lock = threading.Lock()
    outcome: list[Any] = []
    abandoned = False

    def attempt() -> None:
        try:
            result: Any = libvirt.open(uri)
        except libvirt.libvirtError as err:
            result = err
        with lock:
            if abandoned:
                if not isinstance(result, libvirt.libvirtError):
                    result.close()  # the caller gave up; do not leak the late connection
                return
            outcome.append(result)
            done.set()

    threading.Thread(target=attempt, name=f"libvirt-open {host}", daemon=True).start()
    if not done.wait(timeout):
        with lock:
            if not done.is_set():
                abandoned = True
                raise HostUnreachableError(
                    f"cannot connect to {uri}: no answer within {timeout} s", host=host
                )
    result = outcome[0]
    if isinstance(result, libvirt.libvirtError):
        raise HostUnreachableError(
            f"cannot connect to {uri}: {_message(result)}", host=host
        ) from result
    return result


class _ConsoleReader:
    """Reads a domain's serial console in a thread until a marker shows up or it ends."""

    def __init__(self, conn: Any, dom: Any, *, marker: str) -> None:
        self._conn = conn
        self._dom = dom
        self._marker = marker
        self._stream: Any = None
        self._chunks: list[bytes] = []
        self._thread: threading.Thread | None = None
        self.found = threading.Event()

    def start(self) -> None:
        self._stream = self._conn.newStream(0)
        self._dom.openConsole(None, self._stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        self._thread = threading.Thread(target=self._read, name="vmf-console", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                data = self._stream.recv(4096)
                if not isinstance(data, bytes) or not data:
                    return
                self._chunks.append(data)
                if self._marker in self.text():
                    self.found.set()
        except libvirt.libvirtError:
            # The console ends with an error when the domain is destroyed. Should it end any
            # earlier, the marker was not seen: the probe's answer is then "no", with whatever
            # the console showed until then.
            return

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")

    def stop(self) -> None:
        """Call after destroying the domain: its end closes the console and the thread."""
        if self._thread is not None:
            self._thread.join(5.0)
        if self._stream is not None:
            # Frees the stream (and wakes a reader still waiting); on a stream that the
            # domain's end already closed it fails, which changes nothing.
            with contextlib.suppress(libvirt.libvirtError):
                self._stream.abort()
        if self._thread is not None:
            self._thread.join(5.0)


def _probe_domain_xml(*, name: str, domain_type: str, kernel: str) -> str:
    owner = OwnerMetadata(
        fleet="vmfleet-probe", vm=name, template="boot-probe", index=None, spec_hash="-"
    )
    # useserial: SeaBIOS prints on the serial console too, which helps read a failed probe.
    return f"""<domain type='{domain_type}'>
  <name>{name}</name>
  <metadata>{owner.to_xml()}</metadata>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{kernel}</kernel>
    <bios useserial='yes'/>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>"""


# The probe payload: x86 machine code in a multiboot image, which QEMU boots as a <kernel>
# (SeaBIOS, then QEMU's multiboot loader hands over in 32-bit protected mode, paging off).
_LOAD = 0x100000  # where the image is loaded (1 MiB); it is mapped 1:1 below
_ENTRY = 0x20  # the code follows the 32-byte multiboot header
_DATA = 0x800  # messages and the GDT
_PML4, _PDPT, _PD = 0x1000, 0x2000, 0x3000  # page tables: 1 GiB identity map, 2 MiB pages
_IMAGE_SIZE = 0x4000
_COPY_SRC, _COPY_DST, _COPY_BYTES = 16 * MiB, 32 * MiB, 16 * MiB  # needs 48 MiB of RAM


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _print_code(address: int) -> bytes:
    """Send the NUL-terminated string at `address` to COM1; the same bytes in 32/64-bit mode.

    mov esi, address / next: lodsb / test al, al / jz +7 / mov dx, 0x3f8 / out dx, al / jmp next
    """
    return b"\xbe" + _u32(address) + b"\xac\x84\xc0\x74\x07\x66\xba\xf8\x03\xee\xeb\xf4"


def _copy_code(*, src: int, dst: int) -> bytes:
    """mov esi, src / mov edi, dst / mov ecx, qwords / rep movsq (direction set by caller)."""
    qwords = _COPY_BYTES // 8
    return b"\xbe" + _u32(src) + b"\xbf" + _u32(dst) + b"\xb9" + _u32(qwords) + b"\xf3\x48\xa5"


def probe_payload(*, rounds: int = PROBE_COPY_ROUNDS) -> bytes:
    """The boot probe's 16 KiB multiboot image (x86-64 code, hand-assembled, annotated).

    It prints `VMFLEET-PROBE-32` on COM1, enables PAE paging and long mode, prints
    `VMFLEET-PROBE-64`, copies 16 MiB forward and backward `rounds` times, prints
    PROBE_DONE_MARKER and halts. The copies matter: on a host whose nested KVM is broken,
    firmware and mode switches run fine but memory-heavy code crawls (a Linux kernel there
    needed ~2 minutes to print its first line, against < 1 s under TCG).
    """
    image = bytearray(_IMAGE_SIZE)
    msg32, msg64, msg_ok, gdt, gdtr = (_DATA + offset for offset in (0, 0x20, 0x40, 0x80, 0xA0))
    magic, flags = 0x1BADB002, 0x00010000  # flag 16: load addresses are in the header (no ELF)
    image[0:32] = struct.pack(
        "<8I", magic, flags, -(magic + flags) & 0xFFFFFFFF,
        _LOAD, _LOAD, _LOAD + _IMAGE_SIZE, 0, _LOAD + _ENTRY,
    )  # fmt: skip
    code = bytearray(_print_code(_LOAD + msg32))
    code += b"\xb8" + _u32(_LOAD + _PML4) + b"\x0f\x22\xd8"  # mov eax, pml4 / mov cr3, eax
    code += b"\x0f\x20\xe0\x83\xc8\x20\x0f\x22\xe0"  # cr4 |= PAE
    code += b"\xb9\x80\x00\x00\xc0\x0f\x32"  # mov ecx, EFER / rdmsr
    code += b"\x0d\x00\x01\x00\x00\x0f\x30"  # or eax, LME / wrmsr
    code += b"\x0f\x01\x15" + _u32(_LOAD + gdtr)  # lgdt [gdtr]
    code += b"\x0f\x20\xc0\x0d\x00\x00\x00\x80\x0f\x22\xc0"  # cr0 |= PG: long mode
    after_jump = _ENTRY + len(code) + 7
    code += b"\xea" + _u32(_LOAD + after_jump) + b"\x08\x00"  # jmp far 0x08:after_jump
    code += _print_code(_LOAD + msg64)  # now in 64-bit mode
    code += b"\xbb" + _u32(rounds)  # mov ebx, rounds
    loop = len(code)
    code += b"\xfc" + _copy_code(src=_COPY_SRC, dst=_COPY_DST)  # cld / copy forward
    last = _COPY_BYTES - 8
    code += b"\xfd" + _copy_code(src=_COPY_SRC + last, dst=_COPY_DST + last)  # std / backward
    code += b"\xfc\xff\xcb"  # cld / dec ebx
    code += b"\x0f\x85" + struct.pack("<i", loop - (len(code) + 6))  # jnz loop
    code += _print_code(_LOAD + msg_ok)
    code += b"\xfa\xf4\xeb\xfd"  # cli / hlt / jmp back to hlt
    if _ENTRY + len(code) > _DATA:
        raise AssertionError("probe code overlaps its data")
    image[_ENTRY : _ENTRY + len(code)] = code
    for offset, text in ((msg32, "VMFLEET-PROBE-32\n"), (msg64, "VMFLEET-PROBE-64\n"),
                         (msg_ok, PROBE_DONE_MARKER + "\n")):  # fmt: skip
        image[offset : offset + len(text)] = text.encode()
    # GDT: null descriptor, then a 64-bit ring-0 code segment (selector 0x08); GDTR points to it.
    image[gdt : gdt + 16] = struct.pack("<QQ", 0, 0x00AF9A000000FFFF)
    image[gdtr : gdtr + 6] = struct.pack("<HI", 15, _LOAD + gdt)
    image[_PML4 : _PML4 + 8] = struct.pack("<Q", (_LOAD + _PDPT) | 0x3)  # present, writable
    image[_PDPT : _PDPT + 8] = struct.pack("<Q", (_LOAD + _PD) | 0x3)
    for index in range(512):  # 512 x 2 MiB pages (present, writable, page-size)
        image[_PD + 8 * index : _PD + 8 * index + 8] = struct.pack("<Q", (index << 21) | 0x83)
    return bytes(image)


def _dir_pool_xml(*, name: str, path: str) -> str:
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = name
    ET.SubElement(ET.SubElement(pool, "target"), "path").text = path
    return ET.tostring(pool, encoding="unicode")


def _upload_volume_xml(*, name: str, size: int) -> str:
    # Created as a sparse raw file of the upload's exact size, so the uploaded bytes replace
    # it completely; the dir pool then detects the image format from the bytes themselves.
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(size)
    ET.SubElement(vol, "allocation", unit="bytes").text = "0"
    ET.SubElement(ET.SubElement(vol, "target"), "format", type="raw")
    return ET.tostring(vol, encoding="unicode")


def _read_chunk(_stream: Any, nbytes: int, data: BinaryIO) -> bytes:
    return data.read(min(nbytes, _UPLOAD_CHUNK))


def _xml_name(xml: str, *, kind: str) -> str:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise ValueError(f"{kind} XML does not parse: {err}") from err
    name = (root.findtext("name") or "").strip()
    if not name:
        raise ValueError(f"{kind} XML has no <name>")
    return name


def _with_uuid(xml: str, domain_uuid: str) -> str:
    """The domain XML with `<uuid>` set to `domain_uuid` when it has none (for redefinition)."""
    root = ET.fromstring(xml)
    if root.find("uuid") is not None:
        return xml
    name = root.find("name")
    position = 0 if name is None else list(root).index(name) + 1
    element = ET.Element("uuid")
    element.text = domain_uuid
    root.insert(position, element)
    ET.register_namespace(METADATA_PREFIX, NAMESPACE)  # keep `vmfleet:` rather than `ns0:`
    return ET.tostring(root, encoding="unicode")


def _require_our_volume_name(name: str) -> None:
    if not name.startswith(VOLUME_PREFIX):
        raise ValueError(f"volume name {name!r} lacks vmfleet's {VOLUME_PREFIX!r} prefix")


_UNITS = {
    "": 1, "b": 1, "bytes": 1,
    "kb": 1000, "k": KiB, "kib": KiB,
    "mb": 1000**2, "m": MiB, "mib": MiB,
    "gb": 1000**3, "g": 1024**3, "gib": 1024**3,
    "tb": 1000**4, "t": 1024**4, "tib": 1024**4,
    "pb": 1000**5, "p": 1024**5, "pib": 1024**5,
    "eb": 1000**6, "e": 1024**6, "eib": 1024**6,
}  # fmt: skip


def _size_bytes(element: ET.Element | None) -> int | None:
    """A libvirt size element in bytes (`unit` defaults to bytes), None when absent."""
    if element is None or element.text is None:
        return None
    unit = element.get("unit", "bytes").lower()
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit {unit!r} in <{element.tag}>")
    return int(element.text.strip()) * _UNITS[unit]


def _volume_bytes_needed(xml: str) -> int:
    root = ET.fromstring(xml)
    capacity = _size_bytes(root.find("capacity")) or 0
    allocation = _size_bytes(root.find("allocation"))
    fmt = root.find("target/format")
    raw = fmt is None or fmt.get("type", "raw") == "raw"
    if allocation is not None:
        return allocation
    return capacity if raw else 0


def _volume_info(vol: Any, *, pool: str) -> VolumeInfo:
    root = ET.fromstring(vol.XMLDesc(0))
    _type, capacity, allocation = vol.info()
    fmt = root.find("target/format")
    return VolumeInfo(
        name=str(vol.name()),
        pool=pool,
        path=str(vol.path()),
        capacity=int(capacity),
        allocation=int(allocation),
        format=None if fmt is None else fmt.get("type"),
        backing_path=root.findtext("backingStore/path"),
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
    )


def _has_nvram(xml: str) -> bool:
    root = ET.fromstring(xml)
    return root.find("os/nvram") is not None or root.find("os/loader[@type='pflash']") is not None


def _affect_flags(*, live: bool, config: bool) -> list[int]:
    if not (live or config):
        raise ValueError("nothing to change: ask for live and/or config")
    flags = []
    if live:
        flags.append(libvirt.VIR_DOMAIN_AFFECT_LIVE)
    if config:
        flags.append(libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    return flags


__all__ = [
    "BootProbe",
    "DomainInfo",
    "DomainState",
    "GuestCapability",
    "HostCapabilities",
    "KeepAlive",
    "Lease",
    "LibvirtHost",
    "NetworkInfo",
    "PoolInfo",
    "ShutdownResult",
    "SnapshotInfo",
    "VolumeInfo",
    "event_loop_running",
    "probe_payload",
    "start_event_loop",
]
