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


def port_open(address: str, port: int, *, timeout: float = 2.0) -> bool:
    """True when something accepts a TCP connection there and keeps it open briefly.

    A QEMU user-mode forward accepts every connection even while nothing listens in the
    guest, then closes it at once; so a connection that is closed straight away (or reset)
    does not count.
    """
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(0.3)
            try:
                data = sock.recv(1, socket.MSG_PEEK)
            except TimeoutError:
                return True  # open and quiet: a listener that waits for us to speak
            return bool(data)
    except OSError:
        return False


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
