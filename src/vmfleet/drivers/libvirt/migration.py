"""Moving a domain to another host: libvirt's live migration, and volume copies between hosts.

Live: `migrate_live` runs one migration job, peer to peer (the source libvirtd connects to
the destination's URI itself) or, when the source cannot reach that URI, managed by
vmfleet (this process holds both connections). The source domain stays defined but shut
off afterwards (no `UNDEFINE_SOURCE`): the engine removes it once the destination runs, so
a crash in between always leaves one running copy and the source's definition to find.
Disks named in `copy_disks` are mirrored while the guest runs (`NON_SHARED_INC`: only the
top layer, the destination already holds the base image and an empty overlay over it);
disks not named must exist at the destination (shared storage, or copied before).

A destination with no host name in its URI is this machine: the migration stream and the
disk mirror then go through 127.0.0.1, never through whatever the host name resolves to.

Offline: `copy_volume` streams one volume's bytes (a qcow2 overlay as it is, backing
reference included) from this host's pool into a new volume on another host.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import libvirt

from vmfleet.drivers.libvirt.connection import libvirt_message
from vmfleet.drivers.libvirt.storage import _require_our_volume_name
from vmfleet.drivers.libvirt.watch import _Watch
from vmfleet.errors import HypervisorError, LiveMigrationRefusedError, OperationTimeout

MiB = 1 << 20
# libvirt's answers that mean "not while it runs" (a stopped copy may still move)
_REFUSALS = frozenset(
    {
        libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
        libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
        libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
        libvirt.VIR_ERR_CPU_INCOMPATIBLE,
        libvirt.VIR_ERR_NO_SUPPORT,
    }
)
_CHUNK = 4 * MiB


@dataclass(frozen=True, slots=True)
class MigrationOptions:
    """How to migrate: bandwidth in MiB/s, the longest pause in ms, a deadline in seconds
    (the job is cancelled after it and the guest keeps running on the source), the disk
    targets to copy, and a destination XML when paths differ there."""

    bandwidth: int | None = None
    max_downtime: int | None = None
    timeout: float | None = None
    copy_disks: tuple[str, ...] = ()
    dest_xml: str | None = None
    persist_xml: str | None = None
    peer_to_peer: bool = True


@dataclass(frozen=True, slots=True)
class MigrationProgress:
    """One reading of a migration job (bytes, bytes per second, seconds)."""

    phase: str
    memory_remaining: int
    memory_total: int
    disk_remaining: int
    disk_total: int
    rate: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """`seconds`: the whole call; `downtime_ms`: the pause libvirt measured (None: unknown)."""

    seconds: float
    downtime_ms: float | None
    mode: str


def migration_uri(dest_uri: str) -> str | None:
    """The migration stream's URI for a destination on this machine; None for remote ones
    (libvirt then uses the destination's host name)."""
    return None if urlsplit(dest_uri).hostname else "tcp://127.0.0.1"


class _Migration(_Watch):
    """Migration of our domains to another `_Migration` host, and volume copies."""

    def migrate_live(
        self,
        name: str,
        dest: _Migration,
        options: MigrationOptions,
        *,
        progress: Callable[[MigrationProgress], None] | None = None,
    ) -> MigrationResult:
        """Live-migrate one of our running domains to `dest`; see the module docstring.

        HypervisorError names both hosts when libvirt refuses or fails (the guest then runs
        on the source still); OperationTimeout when `options.timeout` passed (job cancelled).
        """
        dom = self._owned(name, doing="migrate")
        params = self._params(dest, options)
        flags = (
            libvirt.VIR_MIGRATE_LIVE
            | libvirt.VIR_MIGRATE_PERSIST_DEST
            | libvirt.VIR_MIGRATE_ABORT_ON_ERROR
        )
        if options.copy_disks:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
        if options.max_downtime is not None:
            with self._call("set the migration's max downtime", vm=name):
                dom.migrateSetMaxDowntime(options.max_downtime, 0)
        stop = threading.Event()
        timed_out = threading.Event()
        began = time.monotonic()
        watcher = threading.Thread(
            target=self._watch,
            args=(dom, began, options.timeout, progress, stop, timed_out),
            daemon=True,
        )
        watcher.start()
        mode = "p2p" if options.peer_to_peer else "managed"
        try:
            try:
                self._migrate(dom, dest, params, flags, peer_to_peer=options.peer_to_peer)
            except libvirt.libvirtError as err:
                if not options.peer_to_peer or not _cannot_reach(err) or timed_out.is_set():
                    raise
                mode = "managed"  # the source libvirtd cannot reach the destination's URI
                self._migrate(dom, dest, params, flags, peer_to_peer=False)
        except libvirt.libvirtError as err:
            if timed_out.is_set():
                raise OperationTimeout(
                    f"host {self.name}: vm {name}: migrate to {dest.name}: not done after "
                    f"{options.timeout:g} s, cancelled (the VM runs on {self.name})"
                ) from err
            kind = (
                LiveMigrationRefusedError if err.get_error_code() in _REFUSALS else HypervisorError
            )
            raise kind(
                f"migrate to {dest.name}: {libvirt_message(err)}", host=self.name, vm=name
            ) from err
        finally:
            stop.set()
            watcher.join()
        seconds = time.monotonic() - began
        return MigrationResult(seconds, dest.completed_downtime(name), mode)

    def _params(self, dest: _Migration, options: MigrationOptions) -> dict[str, Any]:
        params: dict[str, Any] = {}
        local_uri = migration_uri(dest.uri)
        if local_uri is not None:
            # Daemons on one machine each hand out ports from the same range without knowing
            # of each other: ports the kernel picked as free avoid their clashes.
            params[libvirt.VIR_MIGRATE_PARAM_URI] = f"{local_uri}:{_free_port()}"
            params[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] = "127.0.0.1"
            if options.copy_disks:
                params[libvirt.VIR_MIGRATE_PARAM_DISKS_PORT] = _free_port()
        if options.bandwidth is not None:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = options.bandwidth
        if options.copy_disks:
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(options.copy_disks)
        if options.dest_xml is not None:
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = options.dest_xml
        if options.persist_xml is not None:
            params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = options.persist_xml
        return params

    def _migrate(
        self,
        dom: Any,
        dest: _Migration,
        params: dict[str, Any],
        flags: int,
        *,
        peer_to_peer: bool,
    ) -> None:
        if peer_to_peer:
            dom.migrateToURI3(dest.uri, params, flags | libvirt.VIR_MIGRATE_PEER2PEER)
        else:
            dom.migrate3(dest._connection(), params, flags)

    def _watch(
        self,
        dom: Any,
        began: float,
        timeout: float | None,
        progress: Callable[[MigrationProgress], None] | None,
        stop: threading.Event,
        timed_out: threading.Event,
    ) -> None:
        """Report the job every half second; cancel it once `timeout` has passed."""
        while not stop.wait(0.5):
            elapsed = time.monotonic() - began
            if timeout is not None and elapsed > timeout and not timed_out.is_set():
                timed_out.set()
                with contextlib.suppress(libvirt.libvirtError):
                    dom.abortJob()
            if progress is None:
                continue
            try:
                stats = dom.jobStats(0)
            except libvirt.libvirtError:
                continue  # the job ended between two readings
            if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                continue
            progress(_reading(stats, elapsed))

    def migratable_xml(self, name: str, *, inactive: bool = False) -> str:
        """The domain's XML as a destination must receive it (libvirt's migratable form)."""
        dom = self._owned(name, doing="read the migratable XML")
        flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE
        if inactive:
            flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
        with self._call("read the migratable XML", vm=name):
            return str(dom.XMLDesc(flags))

    def migration_job(self, name: str) -> MigrationProgress | None:
        """The job running on a domain now (a migration in flight), or None."""
        dom = self._lookup(name)
        if dom is None:
            return None
        try:
            stats = dom.jobStats(0)
        except libvirt.libvirtError:
            return None
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return _reading(stats, stats.get("time_elapsed", 0) / 1000)

    def abort_job(self, name: str) -> bool:
        """Cancel the job on one of our domains; False when there was none."""
        dom = self._owned(name, doing="cancel the migration")
        try:
            dom.abortJob()
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                return False
            raise self._error(err, doing="cancel the migration", vm=name) from err
        return True

    def completed_downtime(self, name: str) -> float | None:
        """The downtime (ms) of the last completed job on a domain, when libvirt kept it."""
        dom = self._lookup(name)
        if dom is None:
            return None
        try:
            stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError:
            return None
        value = stats.get("downtime")
        return None if value is None else float(value)

    def copy_volume(self, pool: str, name: str, dest: _Migration, dest_pool: str) -> None:
        """Copy one of our volumes, byte for byte, into a new volume of the same name on
        `dest` (deleted again on failure). The destination's pool must have room."""
        _require_our_volume_name(name)
        source = self._volume(pool, name)
        with self._call(f"read volume {name!r}"):
            size = int(source.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])  # file length
        target = dest._new_raw_volume(dest_pool, name, size)
        try:
            self._stream(source, target, dest, name=name)
        except BaseException as failure:
            dest._delete_after_failure(target, name=name, failure=failure)
            raise

    def _new_raw_volume(self, pool: str, name: str, size: int) -> Any:
        handle = self._pool(pool)
        self._require_space(handle, pool=pool, needed=size, what=name)
        xml = (
            f"<volume><name>{name}</name><capacity unit='bytes'>{size}</capacity>"
            "<target><format type='raw'/></target></volume>"
        )
        with self._call(f"create volume {name!r} in pool {pool!r}"):
            return handle.createXML(xml, 0)

    def _stream(self, source: Any, target: Any, dest: _Migration, *, name: str) -> None:
        down = self._connection().newStream(0)
        up = dest._connection().newStream(0)
        try:
            with self._call(f"copy volume {name!r} to {dest.name}"):
                source.download(down, 0, 0, 0)
                target.upload(up, 0, 0, 0)
                while True:
                    data = down.recv(_CHUNK)
                    if isinstance(data, int) or not data:
                        break  # -2 cannot happen on a blocking stream; b"": end of file
                    while data:
                        data = data[up.send(data) :]
                down.finish()
                up.finish()
        except BaseException:
            for stream in (down, up):
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
            raise


def _free_port() -> int:
    """A 127.0.0.1 TCP port free now, never the same twice in a row in this process."""
    with _ports_lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _recent_ports:
                _recent_ports.append(port)
                del _recent_ports[:-64]
                return port


_ports_lock = threading.Lock()
_recent_ports: list[int] = []


def _cannot_reach(err: libvirt.libvirtError) -> bool:
    message = libvirt_message(err).lower()
    return "connect" in message and "remote" in message


def _reading(stats: dict[str, Any], elapsed: float) -> MigrationProgress:
    memory_remaining = int(stats.get("memory_remaining", 0))
    disk_remaining = int(stats.get("disk_remaining", 0))
    if not stats.get("memory_total") and not stats.get("disk_total"):
        phase = "setup"  # the destination is starting; nothing is counted yet
    elif disk_remaining:
        phase = "disks"
    elif stats.get("memory_iteration", 0) > 1:
        phase = f"memory pass {stats['memory_iteration']}"
    else:
        phase = "memory"
    return MigrationProgress(
        phase=phase,
        memory_remaining=memory_remaining,
        memory_total=int(stats.get("memory_total", 0)),
        disk_remaining=disk_remaining,
        disk_total=int(stats.get("disk_total", 0)),
        rate=int(stats.get("memory_bps", 0) or stats.get("disk_bps", 0)),
        elapsed=elapsed,
    )
