"""A per-fleet lock on every host, so two checkouts (two state dirs) cannot interleave.

The state dir's lock (`state.store.fleet_lock`) only stops runs that share `.vmfleet/`. This
one lives where the fleet does: a small volume `vmf-<fleet>.lock` in each host's pool,
created atomically (libvirt refuses a second volume of the same name), holding who took it
(token, command, pid, host name, user) and when it expires. It is released at the end. A
lock whose owner is a dead process on this machine, or that has expired, is broken with a
message; one that cannot be read for a while (its owner died between creating and writing
it) too. Unreachable hosts are skipped: nothing can change there anyway.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from vmfleet.drivers import names
from vmfleet.engine.context import FleetContext
from vmfleet.errors import HostUnreachableError, LockedError

if TYPE_CHECKING:
    from vmfleet.drivers.libvirt import LibvirtHost

# Long enough for any run; the dead-owner check frees a crashed local run at once.
TTL_SECONDS = 12 * 3600.0
UNREADABLE_GRACE = 10.0
POLL = 0.5

Notice = Callable[[str], None]


@contextlib.contextmanager
def hold(
    ctx: FleetContext, *, what: str, wait: float = 0.0, notice: Notice = print
) -> Iterator[None]:
    """Take the fleet's lock on every reachable host (in name order, so two runs never wait
    for each other crosswise), run the body, release. LockedError when a host's lock stays
    held by someone else for `wait` seconds."""
    token = uuid.uuid4().hex
    record = _record(token, what, TTL_SECONDS)
    name = names.lock(fleet=ctx.fleet)
    held: list[tuple[LibvirtHost, str]] = []
    try:
        for host_name in sorted(ctx.host_specs()):
            try:
                host = ctx.host(host_name)
            except HostUnreachableError:
                continue
            if not holds_locks(host):
                continue
            pool = ctx.host_specs()[host_name].pool
            _acquire(
                host, host_name, pool, name, record, wait=wait, notice=notice,
                what=f"the lock of fleet {ctx.fleet}",
                busy=f"the fleet is busy on host {host_name}",
            )  # fmt: skip
            held.append((host, pool))
        yield
    finally:
        for host, pool in reversed(held):
            _release(host, pool, name, token)


def holds_locks(host: LibvirtHost) -> bool:
    """Whether lock volumes work on a host: not on libvirt's test driver, which lives in
    this process alone (a thread lock is enough there) and cannot hold their bytes."""
    return not host.uri.startswith("test:")


@contextlib.contextmanager
def hold_one(
    host: LibvirtHost,
    host_name: str,
    pool: str,
    name: str,
    *,
    what: str,
    wait: float,
    ttl: float,
    notice: Notice,
) -> Iterator[bool]:
    """Take one lock volume `name` on one host for `what` (waiting up to `wait` s, then
    LockedError); yields whether a stale lock (a dead or expired owner's) was broken to get
    it, which tells the body that its owner's work may be half done."""
    token = uuid.uuid4().hex
    broke = _acquire(
        host, host_name, pool, name, _record(token, what, ttl), wait=wait, notice=notice,
        what=f"the lock {name}", busy=f"{what} is busy on host {host_name}",
    )  # fmt: skip
    try:
        yield broke
    finally:
        _release(host, pool, name, token)


def _record(token: str, what: str, ttl: float) -> bytes:
    return json.dumps(
        {
            "token": token,
            "what": what,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "user": getpass.getuser(),
            "since": time.time(),
            "expires": time.time() + ttl,
        }
    ).encode()


def _acquire(
    host: LibvirtHost,
    host_name: str,
    pool: str,
    name: str,
    record: bytes,
    *,
    wait: float,
    notice: Notice,
    what: str,
    busy: str,
) -> bool:
    """Create the lock volume; True when a stale one had to be broken first."""
    deadline = time.monotonic() + wait
    unreadable_since: float | None = None
    broke = False
    while True:
        if host.create_marker(pool, name, record):
            return broke
        raw = host.read_marker(pool, name)
        if raw is None:
            continue  # released meanwhile: try again at once
        owner = _parse(raw)
        if owner is None:
            unreadable_since = unreadable_since or time.monotonic()
            stale = time.monotonic() - unreadable_since > UNREADABLE_GRACE
            why = "its owner died before writing it"
        else:
            unreadable_since = None
            stale, why = _stale(owner)
        if stale:
            notice(f"host {host_name}: breaking {what}: {why}")
            host.delete_volume(pool, name)
            broke = True
            continue
        if time.monotonic() >= deadline:
            raise LockedError(f"{busy}: {_describe(owner)} (--wait SECONDS to queue behind it)")
        time.sleep(POLL)


def _release(host: LibvirtHost, pool: str, name: str, token: str) -> None:
    """Delete the lock if it is still ours (never someone's who broke and retook it)."""
    with contextlib.suppress(HostUnreachableError):  # a lost host: its lock expires
        raw = host.read_marker(pool, name)
        owner = _parse(raw) if raw is not None else None
        if owner is not None and owner.get("token") == token:
            host.delete_volume(pool, name)


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) and "token" in data else None


def _stale(owner: dict[str, Any]) -> tuple[bool, str]:
    expires = owner.get("expires")
    if isinstance(expires, (int, float)) and expires < time.time():
        return True, f"{_describe(owner)} expired"
    pid = owner.get("pid")
    if (
        owner.get("hostname") == socket.gethostname()
        and isinstance(pid, int)
        and not process_alive(pid)
    ):
        return True, f"{_describe(owner)} is no longer running"
    return False, ""


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (signal 0 sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _describe(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return "a lock being written"
    return (
        f"{owner.get('what', '?')} by {owner.get('user', '?')} (pid {owner.get('pid', '?')} on "
        f"{owner.get('hostname', '?')})"
    )
