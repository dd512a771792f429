"""Reaching into guests: is it up yet? SSH banners, TCP ports, the guest agent.

These checks only open TCP connections to the address they are given; vmfleet hands them
127.0.0.1 and a forwarded port for user-mode NICs, or the VM's own address otherwise.

Connecting and waiting for the banner have separate deadlines: sshd in a loaded TCG guest may
accept at once and greet seconds later, and a new connection would start that wait over.
The `async_` checks serve the readiness watcher (one event loop for many VMs); the plain
ones run the same code for callers without a loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

CONNECT_TIMEOUT = 2.0
# How long one connection waits for the greeting. Long: reconnecting would only restart
# sshd's work (a new process, key loading) on a guest that is already slow.
BANNER_TIMEOUT = 30.0


async def async_ssh_banner(
    address: str,
    port: int,
    *,
    timeout: float = CONNECT_TIMEOUT,
    banner_timeout: float = BANNER_TIMEOUT,
) -> str | None:
    """The SSH server's identification line (`SSH-2.0-…`), or None when it has none yet
    (refused, closed, or silent). `timeout` bounds the TCP connect, `banner_timeout` the wait
    for the greeting on that same connection."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except (OSError, TimeoutError):
        return None
    try:
        data = await asyncio.wait_for(reader.readline(), banner_timeout)
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()
    line = data.strip().decode("ascii", "replace")
    return line if line.startswith("SSH-") else None


def ssh_banner(
    address: str,
    port: int,
    *,
    timeout: float = CONNECT_TIMEOUT,
    banner_timeout: float = BANNER_TIMEOUT,
) -> str | None:
    """`async_ssh_banner` for callers without an event loop."""
    return asyncio.run(
        async_ssh_banner(address, port, timeout=timeout, banner_timeout=banner_timeout)
    )


async def _fate(address: str, port: int, *, timeout: float, hold: float) -> str:
    """'refused', 'closed' (accepted then closed or reset), 'data' or 'quiet' (still open)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except (OSError, TimeoutError):
        return "refused"
    try:
        data = await asyncio.wait_for(reader.read(1), hold)
    except TimeoutError:
        return "quiet"
    except OSError:
        return "closed"
    finally:
        writer.close()
    return "data" if data else "closed"


async def async_port_open(address: str, port: int, *, timeout: float = 2.0) -> bool:
    """True when something in the guest accepts a TCP connection at `address:port`.

    For a direct address, an accepted connection is enough.
    """
    return await _fate(address, port, timeout=timeout, hold=0.3) in ("quiet", "data")


def port_open(address: str, port: int, *, timeout: float = 2.0) -> bool:
    """`async_port_open` for callers without an event loop."""
    return asyncio.run(async_port_open(address, port, timeout=timeout))


async def async_forwarded_port_open(
    address: str, port: int, *, control: int, hold: float = 0.5
) -> bool:
    """True when the guest port behind a QEMU user-mode forward accepts connections.

    A slirp forward accepts every connection on the host side and holds it silently while
    it tries to reach the guest, so 'accepted' proves nothing. `control` is a forward to a
    guest port nothing listens on (port 1): once the guest's network answers, a connection
    there is reset at once. The target counts as open when it sends data, or stays open
    while the control connection is reset, i.e. the guest answered and did not refuse.
    """
    fate = await _fate(address, port, timeout=2.0, hold=hold)
    if fate == "data":
        return True
    if fate != "quiet":
        return False
    return await _fate(address, control, timeout=2.0, hold=hold) == "closed"


def forwarded_port_open(address: str, port: int, *, control: int, hold: float = 0.5) -> bool:
    """`async_forwarded_port_open` for callers without an event loop."""
    return asyncio.run(async_forwarded_port_open(address, port, control=control, hold=hold))


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
