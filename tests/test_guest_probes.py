"""Readiness probes over TCP on 127.0.0.1, including the QEMU user-mode forward case, where
the host side accepts every connection and only a reset shows the guest answered."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from vmfleet.drivers.guest import forwarded_port_open, port_open, ssh_banner, wait_until


@pytest.fixture
def listener() -> Iterator[object]:
    servers: list[socket.socket] = []

    def make(behaviour: str) -> int:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        servers.append(server)

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                if behaviour == "banner":
                    conn.sendall(b"SSH-2.0-test\r\n")
                elif behaviour == "close":
                    conn.close()
                    continue
                # "quiet" and "banner" keep the connection open until the test ends
                threading.Timer(3, conn.close).start()

        threading.Thread(target=serve, daemon=True).start()
        return int(server.getsockname()[1])

    yield make
    for server in servers:
        server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ssh_banner_is_read(listener) -> None:  # type: ignore[no-untyped-def]
    assert ssh_banner("127.0.0.1", listener("banner")) == "SSH-2.0-test"
    assert ssh_banner("127.0.0.1", listener("quiet"), timeout=0.3) is None
    assert ssh_banner("127.0.0.1", closed_port()) is None


@pytest.mark.parametrize(
    ("target", "control", "ready"),
    [
        ("banner", "quiet", True),  # the service spoke: the guest is there
        ("quiet", "close", True),  # guest answered the control with a reset, target stays open
        ("quiet", "quiet", False),  # guest network not up: slirp holds both silently
        ("close", "close", False),  # guest up, nothing listens on the target port
    ],
)
def test_forwarded_port_needs_proof_from_the_guest(  # type: ignore[no-untyped-def]
    listener, target: str, control: str, ready: bool
) -> None:
    assert (
        forwarded_port_open("127.0.0.1", listener(target), control=listener(control), hold=0.3)
        is ready
    )


def test_direct_port_open(listener) -> None:  # type: ignore[no-untyped-def]
    assert port_open("127.0.0.1", listener("quiet"))
    assert not port_open("127.0.0.1", closed_port())


def test_wait_until_gives_up_at_the_deadline() -> None:
    calls: list[int] = []
    assert not wait_until(lambda: bool(calls.append(1)), timeout=0.3, interval=0.05)
    assert 3 <= len(calls) <= 10
    assert wait_until(lambda: True, timeout=0)
