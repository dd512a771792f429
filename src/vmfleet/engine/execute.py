"""Run one command on many VMs at once over SSH (`drivers.ssh`), with per-VM status events.

Host keys are checked against the fleet's known_hosts under each VM's name; with
`ssh.host_keys: accept-new`, a VM without an entry is trusted on first connection and its key
recorded. A VM that cannot be reached counts as failed, with the reason as its output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vmfleet.drivers import ssh, sshkeys
from vmfleet.engine.access import Endpoint

Progress = Callable[[str, str, str], None]


@dataclass(frozen=True, slots=True)
class ExecResult:
    vm: str
    exit_status: int | None
    stdout: str
    stderr: str
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_status == 0


def run(
    endpoints: Sequence[Endpoint],
    command: str,
    *,
    timeout: float = 300.0,
    parallel: int = 32,
    progress: Progress | None = None,
) -> list[ExecResult]:
    """Run `command` on every endpoint, at most `parallel` at a time; results in input order."""
    import asyncio  # here, not with the module: the API imports it for every command

    return asyncio.run(
        _run_all(endpoints, command, timeout=timeout, parallel=parallel, progress=progress)
    )


async def _run_all(
    endpoints: Sequence[Endpoint],
    command: str,
    *,
    timeout: float,
    parallel: int,
    progress: Progress | None,
) -> list[ExecResult]:
    import asyncio

    limit = asyncio.Semaphore(parallel)

    async def one(ep: Endpoint) -> ExecResult:
        async with limit:
            if progress:
                progress(ep.vm, "running", "")
            result = await _run_one(ep, command, timeout=timeout)
            if progress:
                progress(
                    ep.vm,
                    "done" if result.ok else "failed",
                    result.error or f"exit {result.exit_status}",
                )
            return result

    return list(await asyncio.gather(*(one(ep) for ep in endpoints)))


async def _run_one(ep: Endpoint, command: str, *, timeout: float) -> ExecResult:
    import asyncio

    started = time.monotonic()
    if ep.state != "running" or ep.address is None:
        reason = f"not running ({ep.state})" if ep.state != "running" else "no address yet"
        return ExecResult(ep.vm, None, "", "", 0.0, reason)
    if ep.key is None:
        return ExecResult(ep.vm, None, "", "", 0.0, "no SSH key yet (vmfleet up generates it)")
    known = sshkeys.read_entries(ep.known_hosts)
    trust_new = not ep.strict and ep.vm not in known
    try:
        async with asyncio.timeout(timeout):
            result = await ssh.run_command(
                ep.address,
                command,
                port=ep.port,
                user=ep.user,
                key=ep.key,
                known_hosts=ep.known_hosts,
                alias=ep.vm,
                trust_new=trust_new,
                connect_timeout=min(timeout, 30),
            )
    except TimeoutError:
        return ExecResult(
            ep.vm, None, "", "", time.monotonic() - started, f"timed out after {timeout:.0f}s"
        )
    except ssh.SshError as error:
        return ExecResult(
            ep.vm, None, "", "", time.monotonic() - started, f"ssh failed: {error.reason}"
        )
    return ExecResult(
        ep.vm, result.exit_status, result.stdout, result.stderr, time.monotonic() - started
    )
