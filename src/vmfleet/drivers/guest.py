"""Reaching into guests: is it up yet? SSH banners, TCP ports, the guest agent.

These checks only open TCP connections to the address they are given; vmfleet hands them
127.0.0.1 and a forwarded port for user-mode NICs, or the VM's own address otherwise.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def ssh_banner(address: str, port: int, *, timeout: float = 2.0) -> str | None:
    """The SSH server's identification line (`SSH-2.0-…`), or None when it has none yet."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = b""
            while b"\n" not in data and len(data) < 512:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    line = data.split(b"\n", 1)[0].strip().decode("ascii", "replace")
    return line if line.startswith("SSH-") else None


def _connection_fate(address: str, port: int, *, timeout: float, hold: float) -> str:
    """'refused', 'closed' (accepted then closed or reset), 'data' or 'quiet' (still open)."""
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "refused"
    with sock:
        sock.settimeout(hold)
        try:
            data = sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return "quiet"
        except OSError:
            return "closed"
        return "data" if data else "closed"


def port_open(address: str, port: int, *, timeout: float = 2.0) -> bool:
    """True when something in the guest accepts a TCP connection at `address:port`.

    For a direct address, an accepted connection is enough.
    """
    return _connection_fate(address, port, timeout=timeout, hold=0.3) in ("quiet", "data")


def forwarded_port_open(address: str, port: int, *, control: int, hold: float = 0.5) -> bool:
    """True when the guest port behind a QEMU user-mode forward accepts connections.

    A slirp forward accepts every connection on the host side and holds it silently while
    it tries to reach the guest, so 'accepted' proves nothing. `control` is a forward to a
    guest port nothing listens on (port 1): once the guest's network answers, a connection
    there is reset at once. The target counts as open when it sends data, or stays open
    while the control connection is reset, i.e. the guest answered and did not refuse.
    """
    fate = _connection_fate(address, port, timeout=2.0, hold=hold)
    if fate == "data":
        return True
    if fate != "quiet":
        return False
    return _connection_fate(address, control, timeout=2.0, hold=hold) == "closed"


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.25,
    cancelled: Callable[[], bool] = lambda: False,
) -> bool:
    """Poll `check` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if cancelled() or time.monotonic() >= deadline:
            return False
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
