"""Each VM's SSH host key: made by vmfleet, given to the guest, trusted before it boots."""

from __future__ import annotations

from pathlib import Path

from vmfleet.drivers import sshkeys
from vmfleet.engine.context import FleetContext


def known_hosts_path(ctx: FleetContext) -> Path:
    """The fleet's known_hosts, in its state folder; entries are keyed by VM name."""
    return ctx.state_dir / "known_hosts"


def strict_host_keys(ctx: FleetContext) -> bool:
    """Provided host keys are checked strictly; images that ignore them use accept-new."""
    return ctx.loaded.spec.ssh.host_keys == "provided"


def record_host_key(ctx: FleetContext, vm: str) -> sshkeys.KeyPair | None:
    """A new host key for a VM being created, trusted in the fleet's known_hosts at once,
    replacing the key of any earlier VM of that name. None when the fleet does not provide
    keys: the entry is dropped and the first connection adds it (accept-new)."""
    if not strict_host_keys(ctx):
        sshkeys.set_entry(known_hosts_path(ctx), vm, None)
        return None
    pair = sshkeys.generate_ed25519(comment=f"{vm}@vmfleet-{ctx.fleet}")
    sshkeys.set_entry(known_hosts_path(ctx), vm, pair.public)
    return pair


def forget_host_key(ctx: FleetContext, vm: str) -> None:
    """Drop a removed VM's entry."""
    sshkeys.set_entry(known_hosts_path(ctx), vm, None)
