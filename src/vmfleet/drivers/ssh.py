"""The SSH seam: run one command on a guest over SSH (asyncssh), host key checked by alias.

Host keys are checked against a known_hosts file under the guest's alias (ssh's
HostKeyAlias: the VM's name), so they do not depend on address or port. With `trust_new`,
the key is not checked and is recorded under the alias instead (trust on first use).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmfleet.drivers import sshkeys
from vmfleet.errors import GuestError


@dataclass(frozen=True, slots=True)
class SshOutput:
    """What a command left behind: its exit status (None when killed by a signal) and output."""

    exit_status: int | None
    stdout: str
    stderr: str


class SshError(GuestError):
    """The connection or the session failed (refused, authentication, host key, ...);
    `reason` is what SSH said."""

    def __init__(self, reason: str, *, vm: str) -> None:
        self.reason = reason
        super().__init__(f"ssh failed: {reason}", vm=vm)


async def run_command(
    address: str,
    command: str,
    *,
    port: int,
    user: str,
    key: Path,
    known_hosts: Path,
    alias: str,
    trust_new: bool,
    connect_timeout: float,
) -> SshOutput:
    """Run `command` on `address` and wait for it; SshError when SSH itself fails.

    A timeout (TimeoutError) is left to the caller, which owns the deadline.
    """
    import asyncssh  # here, not at the top: `vmfleet --help` should not pay for it

    try:
        async with asyncssh.connect(
            address,
            port=port,
            username=user,
            client_keys=[str(key)],
            known_hosts=None if trust_new else str(known_hosts),
            host_key_alias=alias,
            agent_path=None,
            connect_timeout=connect_timeout,
        ) as conn:
            if trust_new:
                host_key = conn.get_server_host_key()
                if host_key is not None:
                    sshkeys.set_entry(
                        known_hosts, alias, host_key.export_public_key().decode().strip()
                    )
            result = await conn.run(command, check=False)
    except TimeoutError:
        raise
    except (OSError, asyncssh.Error) as error:
        raise SshError(str(error), vm=alias) from error
    return SshOutput(result.exit_status, _text(result.stdout), _text(result.stderr))


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
