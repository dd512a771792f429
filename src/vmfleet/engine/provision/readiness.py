"""Waiting until VMs pass their readiness checks (running, agent, ssh, cloud-init, port:N).

One `ReadinessWatcher` (an asyncio loop on one thread) watches every VM handed to it, so no
thread and no worker slot is held per waiting VM: `add` returns a Future at once. `ssh`
means a login works: the banner, then an authenticated `true` with the fleet's key against
the host key in the fleet's known_hosts, so callers can use SSH as soon as it returns.
`cloud-init` logs in the same way and waits for `cloud-init status --wait`: cloud-init's
later stages (packages, runcmd, the sshd restart for `ssh_pwauth`) are done when it returns.

The default timeout (the spec's `ready.timeout` when not written) grows with the number of
VMs booting on the same host at the same time: guests under TCG share the host's cores.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmfleet.core.expand import Instance
from vmfleet.drivers import guest, ssh, sshkeys
from vmfleet.engine.context import FleetContext
from vmfleet.engine.hostkeys import known_hosts_path, strict_host_keys
from vmfleet.engine.provision.ports import (
    CONTROL_GUEST_PORT,
    FORWARD_SLOT_BASE,
    Access,
    forward_port,
)
from vmfleet.errors import GuestError

if TYPE_CHECKING:
    from vmfleet.drivers.libvirt import LibvirtHost  # types only: libvirt loads on use

DEFAULT_TIMEOUT = 300.0
# Added to the default timeout for each other VM booting on the same host at once.
PER_BOOTING_VM = 60.0
INTERVAL = 0.25
# A login on a slow guest (key exchange under TCG) may take long after the banner.
LOGIN_TIMEOUT = 60.0
LOGIN_RETRY = 0.75


@dataclass(frozen=True, slots=True)
class Login:
    """Who logs in for `ssh` readiness, with which key, checked against which host key."""

    user: str
    key: Path
    known_hosts: Path
    trust_new: bool


@dataclass(frozen=True, slots=True)
class Check:
    """One VM's readiness check, resolved (ports, key) in the caller's thread."""

    vm: str
    host: str
    kind: str  # running | agent | ssh | cloud-init | port:N (as the spec says it)
    timeout: float | None  # None: the default, scaled with the VMs booting at once
    address: str | None = None
    port: int = 22
    control: int | None = None  # the control forward of a user-mode `port:N` check
    login: Login | None = None


def check_for(ctx: FleetContext, instance: Instance, host_name: str, reach: Access) -> Check:
    """What to watch for this VM; GuestError when its check cannot work."""
    ready = instance.fields.ready
    kind = ready.wait_for
    timeout = ready.timeout if "timeout" in ready.model_fields_set else None
    if kind in ("running", "agent"):
        return Check(instance.name, host_name, kind, timeout)
    if kind in ("ssh", "cloud-init"):
        if reach.address is None:
            raise GuestError(f"no address to check {kind} on", vm=instance.name)
        known = known_hosts_path(ctx)
        login = Login(
            user=instance.fields.cloud_init.user or ctx.loaded.spec.ssh.user,
            key=ctx.ssh_private_key(),
            known_hosts=known,
            trust_new=not strict_host_keys(ctx)
            and instance.name not in sshkeys.read_entries(known),
        )
        return Check(
            instance.name, host_name, kind, timeout, reach.address, reach.port, None, login
        )
    if kind.startswith("port:"):
        return _port_check(ctx, instance, host_name, reach, int(kind[5:]), timeout)
    raise GuestError(f"readiness check {kind!r} is not available for VMs", vm=instance.name)


def _port_check(
    ctx: FleetContext,
    instance: Instance,
    host_name: str,
    reach: Access,
    guest_port: int,
    timeout: float | None,
) -> Check:
    if reach.address is None:
        raise GuestError("no address to check the port on", vm=instance.name)
    if reach.address != "127.0.0.1":
        return Check(
            instance.name, host_name, f"port:{guest_port}", timeout, reach.address, guest_port
        )
    port = (
        reach.port
        if guest_port == 22
        else forward_port(
            ctx, host=host_name, vm=instance.name, slot=FORWARD_SLOT_BASE + guest_port
        )
    )
    control = forward_port(
        ctx, host=host_name, vm=instance.name, slot=FORWARD_SLOT_BASE + CONTROL_GUEST_PORT
    )
    return Check(
        instance.name, host_name, f"port:{guest_port}", timeout, reach.address, port, control
    )


def default_timeout(booting: int) -> float:
    """The timeout of a check whose spec sets none, with `booting` VMs (this one included)
    booting on its host at once: Debian guests under TCG took up to 255 s five at a time."""
    return DEFAULT_TIMEOUT + PER_BOOTING_VM * max(0, booting - 1)


class ReadinessWatcher:
    """Watches any number of VMs on one event loop thread (started on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._booting: Counter[str] = Counter()

    def add(
        self, ctx: FleetContext, instance: Instance, host_name: str, reach: Access
    ) -> Future[float]:
        """Start watching a VM; the Future gives the seconds waited, or GuestError."""
        if instance.fields.ready.wait_for == "none":
            done: Future[float] = Future()
            done.set_result(0.0)
            return done
        check = check_for(ctx, instance, host_name, reach)
        return self.watch(check, ctx.host(host_name))

    def watch(self, check: Check, host: LibvirtHost) -> Future[float]:
        """Start watching a resolved check (`add` resolves it from a VM)."""
        return self._submit(self._watch(check, host))

    def close(self) -> None:
        """Stop the loop and its thread; watches still running are cancelled."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _submit(self, coro: Coroutine[Any, Any, float]) -> Future[float]:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                # A daemon thread: a watcher nobody closed never holds the process at exit.
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="vmfleet-readiness", daemon=True
                )
                self._thread.start()
            return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _watch(self, check: Check, host: LibvirtHost) -> float:
        started = time.monotonic()
        self._booting[check.host] += 1
        peak = 1
        last = "no answer yet"
        try:
            while True:
                peak = max(peak, self._booting[check.host])
                limit = default_timeout(peak) if check.timeout is None else check.timeout
                remaining = started + limit - time.monotonic()
                if remaining <= 0:
                    raise GuestError(_timeout_message(check, limit, last), vm=check.vm)
                try:
                    async with asyncio.timeout(remaining):
                        ok, last = await _probe(check, host)
                except TimeoutError:
                    continue
                if ok:
                    return time.monotonic() - started
                await asyncio.sleep(1.0 if check.kind == "agent" else INTERVAL)
        finally:
            self._booting[check.host] -= 1


def _timeout_message(check: Check, limit: float, last: str) -> str:
    what = check.kind
    return (
        f"not ready ({what}) after {limit:.0f}s (last: {last}); raise `ready.timeout` for this"
        f" VM (e.g. `ready: {{wait_for: {what}, timeout: {int(limit * 2 // 60) or 1}m}}`) if"
        " it boots slowly here"
    )


async def _probe(check: Check, host: LibvirtHost) -> tuple[bool, str]:
    """One attempt: passed?, and what was seen (for the timeout message)."""
    if check.kind == "running":
        info = await asyncio.to_thread(host.get_domain, check.vm)
        state = "absent" if info is None else str(info.state)
        return state == "running", f"domain {state}"
    if check.kind == "agent":
        ok = await asyncio.to_thread(host.agent_ping, check.vm, timeout=2.0)
        return ok, "the guest agent answered" if ok else "no answer from the guest agent"
    assert check.address is not None
    if check.kind.startswith("port:"):
        if check.control is not None:
            ok = await guest.async_forwarded_port_open(
                check.address, check.port, control=check.control
            )
        else:
            ok = await guest.async_port_open(check.address, check.port)
        return ok, f"port {check.port} open" if ok else f"port {check.port} not open"
    return await _ssh_login(check, CLOUD_INIT_DONE if check.kind == "cloud-init" else "true")


# Exit 0 when cloud-init is done (2: done with warnings, cloud-init 23.4+), 1 on its errors;
# a guest without cloud-init passes once the login works.
CLOUD_INIT_DONE = (
    "command -v cloud-init >/dev/null 2>&1 || exit 0; "
    "cloud-init status --wait >/dev/null; s=$?; [ $s -eq 2 ] && exit 0; exit $s"
)


async def _ssh_login(check: Check, command: str) -> tuple[bool, str]:
    assert check.address is not None and check.login is not None
    banner = await guest.async_ssh_banner(check.address, check.port)
    if banner is None:
        return False, "no SSH banner"
    login = check.login
    try:
        result = await ssh.run_command(
            check.address,
            command,
            port=check.port,
            user=login.user,
            key=login.key,
            known_hosts=login.known_hosts,
            alias=check.vm,
            trust_new=login.trust_new,
            connect_timeout=LOGIN_TIMEOUT,
        )
    except ssh.SshError as error:
        # sshd greets before cloud-init installs the keys: a refused login costs the guest a
        # key exchange, so the next try waits a little longer than a refused connection.
        await asyncio.sleep(LOGIN_RETRY)
        return False, f"banner {banner!r}, login failed: {error.reason}"
    if check.kind == "cloud-init" and result.exit_status == 1:
        raise GuestError(
            "cloud-init finished with errors (see `cloud-init status --long` in the guest)",
            vm=check.vm,
        )
    return result.exit_status == 0, f"login ran `{command}`: exit {result.exit_status}"


_shared = ReadinessWatcher()


def watcher() -> ReadinessWatcher:
    """The process's watcher, shared by every caller (apply, groups)."""
    return _shared


def wait_ready(
    ctx: FleetContext,
    instance: Instance,
    host_name: str,
    reach: Access,
    *,
    cancelled: Callable[[], bool] = lambda: False,
) -> float:
    """Block until the VM passes its readiness check; seconds waited. GuestError on timeout."""
    future = watcher().add(ctx, instance, host_name, reach)
    while True:
        try:
            return future.result(timeout=INTERVAL)
        except TimeoutError:
            if cancelled():
                future.cancel()
                raise GuestError("readiness wait cancelled", vm=instance.name) from None
