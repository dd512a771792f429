"""The libvirt connection: lazy open with a timeout, keepalive and libvirt's event loop, error
translation (`_call`), calls with a deadline, and small helpers every part of the host shares.
"""

from __future__ import annotations

import contextlib
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import libvirt

from vmfleet import logs
from vmfleet.drivers.commands import CommandRunner, SubprocessRunner
from vmfleet.drivers.libvirt.types import BootProbe, KeepAlive
from vmfleet.errors import HostUnreachableError, HypervisorError

DEFAULT_CONNECT_TIMEOUT = 15.0
POLL_INTERVAL = 0.1
_log = logs.get("libvirt")


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


class _Connection:
    """The connection to one libvirt host and how its errors become ours."""

    def __init__(
        self,
        uri: str,
        *,
        name: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        keepalive: KeepAlive | None = KeepAlive(),
        runner: CommandRunner | None = None,
    ) -> None:
        """`runner` runs the local programs a few calls need (qemu-img); tests pass a fake."""
        self.uri = uri
        self.name = name or uri
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._conn: Any = None
        self._conn_lock = threading.Lock()
        self._runner: CommandRunner = runner or SubprocessRunner()
        # the KVM probe's cache (see `capabilities`), guarded by its own lock
        self._kvm_lock = threading.Lock()
        self._kvm_usable: bool | None = None
        self._kvm_probe: BootProbe | None = None

    @classmethod
    def open(
        cls,
        uri: str,
        *,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
        name: str | None = None,
        keepalive: KeepAlive | None = KeepAlive(),
    ) -> Self:
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
            with logs.timed(_log, "open connection", host=self.name, uri=self.uri):
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
                    f"cannot enable keepalive: {libvirt_message(err)}", host=self.name
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

    def _error(
        self, err: libvirt.libvirtError, *, doing: str, vm: str | None = None
    ) -> HypervisorError:
        message = f"{doing}: {libvirt_message(err)}"
        conn = self._conn
        if conn is not None and not self._alive(conn):
            return HostUnreachableError(message + " (connection lost)", host=self.name, vm=vm)
        return HypervisorError(message, host=self.name, vm=vm)

    @contextlib.contextmanager
    def _call(self, doing: str, *, vm: str | None = None) -> Iterator[None]:
        try:
            with logs.timed(_log, doing, host=self.name, vm=vm or "-"):
                yield
        except libvirt.libvirtError as err:
            raise self._error(err, doing=doing, vm=vm) from err


def libvirt_message(err: libvirt.libvirtError) -> str:
    return str(err.get_error_message() or err)


def call_with_deadline(
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
            f"cannot connect to {uri}: {libvirt_message(result)}", host=host
        ) from result
    return result


def xml_name(xml: str, *, kind: str) -> str:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise ValueError(f"{kind} XML does not parse: {err}") from err
    name = (root.findtext("name") or "").strip()
    if not name:
        raise ValueError(f"{kind} XML has no <name>")
    return name
