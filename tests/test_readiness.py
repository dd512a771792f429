"""Readiness: a slow SSH greeting is waited for on one connection; `ssh` readiness means a
login with the fleet key against the recorded host key works; one watcher serves many VMs;
a timeout says what to raise, and the default timeout grows with the VMs booting at once."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import asyncssh
import pytest

from vmfleet.drivers import sshkeys
from vmfleet.drivers.guest import ssh_banner
from vmfleet.drivers.libvirt import LibvirtHost
from vmfleet.engine.provision.readiness import (
    Check,
    Login,
    ReadinessWatcher,
    default_timeout,
)
from vmfleet.errors import GuestError


def _slow_banner_server(delay: float) -> tuple[socket.socket, int]:
    """Accepts at once, greets after `delay` seconds (sshd in a loaded TCG guest)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Timer(
                delay, lambda c=conn: (c.sendall(b"SSH-2.0-slow\r\n"), c.close())
            ).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


def test_a_banner_sent_seconds_after_accepting_is_read_on_the_same_connection() -> None:
    server, port = _slow_banner_server(3.0)
    with server:
        assert ssh_banner("127.0.0.1", port, timeout=2.0) == "SSH-2.0-slow"


SERVER: dict[str, object] = {}


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, sshkeys.KeyPair, Path]]:
    """A real SSH server on 127.0.0.1 that accepts the client key and runs any command as
    exit `SERVER["exit"]` (0 unless a test sets it), noting it in `SERVER["commands"]`;
    yields its port, its host key pair and the client's private key file."""
    SERVER.clear()
    SERVER.update(exit=0, commands=[])
    host_key = sshkeys.generate_ed25519()
    client = sshkeys.generate_ed25519()
    key = tmp_path / "id_ed25519"
    key.write_text(client.private)
    key.chmod(0o600)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def start() -> asyncssh.SSHAcceptor:
        return await asyncssh.create_server(
            asyncssh.SSHServer,
            "127.0.0.1",
            0,
            server_host_keys=[asyncssh.import_private_key(host_key.private)],
            authorized_client_keys=asyncssh.import_authorized_keys(client.public),
            process_factory=_serve,
        )

    acceptor = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    port = acceptor.sockets[0].getsockname()[1]
    yield port, host_key, key
    loop.call_soon_threadsafe(acceptor.close)
    loop.call_soon_threadsafe(loop.stop)


def _serve(process: asyncssh.SSHServerProcess[str]) -> None:
    commands = SERVER["commands"]
    assert isinstance(commands, list)
    commands.append(process.command)
    process.exit(int(str(SERVER["exit"])))


def _ssh_check(port: int, key: Path, known: Path, *, timeout: float, kind: str = "ssh") -> Check:
    login = Login(user="tester", key=key, known_hosts=known, trust_new=False)
    return Check("vm1", "local", kind, timeout, "127.0.0.1", port, None, login)


@pytest.fixture
def watcher() -> Iterator[ReadinessWatcher]:
    made = ReadinessWatcher()
    yield made
    made.close()


@pytest.fixture
def host() -> LibvirtHost:
    return LibvirtHost("test:///default", name="local")


@pytest.fixture
def trusted(sshd: tuple[int, sshkeys.KeyPair, Path], tmp_path: Path) -> Callable[..., Check]:
    """A check of the `sshd` server whose host key the fleet's known_hosts holds."""
    port, host_key, key = sshd
    known = tmp_path / "known_hosts"
    sshkeys.set_entry(known, "vm1", host_key.public)
    return lambda **kw: _ssh_check(port, key, known, **kw)


def test_ssh_is_ready_when_a_login_with_the_fleet_key_and_known_host_key_works(
    trusted: Callable[..., Check], watcher: ReadinessWatcher, host: LibvirtHost
) -> None:
    waited = watcher.watch(trusted(timeout=20), host).result(30)
    assert waited < 10


def test_ssh_is_not_ready_while_the_host_key_does_not_match(
    sshd: tuple[int, sshkeys.KeyPair, Path],
    tmp_path: Path,
    watcher: ReadinessWatcher,
    host: LibvirtHost,
) -> None:
    port, _host_key, key = sshd
    known = tmp_path / "known_hosts"
    sshkeys.set_entry(known, "vm1", sshkeys.generate_ed25519().public)
    with pytest.raises(GuestError, match="login failed"):
        watcher.watch(_ssh_check(port, key, known, timeout=2), host).result(30)


@pytest.mark.parametrize("status", [0, 2])
def test_cloud_init_readiness_waits_for_cloud_init_status_over_the_login(
    trusted: Callable[..., Check], watcher: ReadinessWatcher, host: LibvirtHost, status: int
) -> None:
    SERVER["exit"] = status  # the guest's shell maps 2 (done, with warnings) to 0 itself
    check = trusted(timeout=20, kind="cloud-init")
    if status == 0:
        assert watcher.watch(check, host).result(30) < 10
    else:
        with pytest.raises(GuestError, match="not ready"):
            watcher.watch(replace(check, timeout=2), host).result(30)
    assert "cloud-init status --wait" in str(SERVER["commands"])


def test_cloud_init_errors_fail_the_vm_at_once(
    trusted: Callable[..., Check], watcher: ReadinessWatcher, host: LibvirtHost
) -> None:
    SERVER["exit"] = 1
    check = trusted(timeout=600, kind="cloud-init")
    with pytest.raises(GuestError, match="cloud-init finished with errors"):
        watcher.watch(check, host).result(30)  # long before the VM's timeout


def test_a_banner_alone_is_not_ssh_readiness_and_the_timeout_says_what_to_raise(
    tmp_path: Path, watcher: ReadinessWatcher, host: LibvirtHost
) -> None:
    server, port = _slow_banner_server(0.0)
    key = tmp_path / "id"
    key.write_text(sshkeys.generate_ed25519().private)
    with server, pytest.raises(GuestError, match=r"after 2s .*raise `ready.timeout`"):
        watcher.watch(_ssh_check(port, key, tmp_path / "kh", timeout=2), host).result(30)


def test_one_watcher_watches_many_vms_at_once(watcher: ReadinessWatcher, host: LibvirtHost) -> None:
    server, port = _slow_banner_server(1.0)
    checks = [Check(f"vm{n}", "local", f"port:{port}", 10, "127.0.0.1", port) for n in range(20)]
    before = _threads()
    started = time.monotonic()
    with server:
        futures = [watcher.watch(c, host) for c in checks]
        time.sleep(0.5)  # every VM is being waited for now
        assert _threads() <= before + 1  # the watcher's one thread
        assert all(f.result(30) < 10 for f in futures)
    # all at once on one loop: about one probe's time, not twenty after one another
    assert time.monotonic() - started < 8


def _threads() -> int:
    """Threads other than the test server's greeting timers."""
    return sum(not isinstance(t, threading.Timer) for t in threading.enumerate())


@pytest.mark.parametrize(("booting", "seconds"), [(1, 300.0), (2, 360.0), (5, 540.0), (20, 1440.0)])
def test_the_default_timeout_grows_with_the_vms_booting_on_the_host(
    booting: int, seconds: float
) -> None:
    assert default_timeout(booting) == seconds


def test_a_port_check_timeout_suggests_a_readiness_value_that_validates(
    watcher: ReadinessWatcher, host: LibvirtHost
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = int(unused.getsockname()[1])
    check = Check("vm1", "local", "port:22", 1, "127.0.0.1", port)
    with pytest.raises(GuestError, match=r"`ready: \{wait_for: port:22, timeout: 1m\}`"):
        watcher.watch(check, host).result(30)
