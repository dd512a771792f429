"""Each VM's SSH host key: made by vmfleet, given to the guest, trusted before it boots."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from vmfleet.drivers import sshkeys
from vmfleet.engine.context import FleetContext

if TYPE_CHECKING:
    from vmfleet.drivers.libvirt import DomainInfo, LibvirtHost


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


def public_key(ctx: FleetContext, host: LibvirtHost, vm: str) -> str | None:
    """The VM's host public key for its domain metadata: from known_hosts, else the one its
    existing domain already carries (a redefine after the state dir was lost keeps it)."""
    known = sshkeys.read_entries(known_hosts_path(ctx)).get(vm)
    if known is not None:
        return known
    info = host.get_domain(vm)
    if info is not None and info.owner is not None and info.owner.fleet == ctx.fleet:
        return info.owner.host_key
    return None


def restore(ctx: FleetContext, domains: Iterable[DomainInfo]) -> list[str]:
    """Put back the known_hosts entries of this fleet's VMs that their domain metadata holds
    and the file lacks (after `.vmfleet/` was lost); returns the VMs restored."""
    path = known_hosts_path(ctx)
    have = sshkeys.read_entries(path)
    restored = []
    for info in domains:
        owner = info.owner
        if owner is None or owner.fleet != ctx.fleet or owner.host_key is None:
            continue
        if info.name not in have:
            sshkeys.set_entry(path, info.name, owner.host_key)
            restored.append(info.name)
    return restored


def forget_host_key(ctx: FleetContext, vm: str) -> None:
    """Drop a removed VM's entry."""
    sshkeys.set_entry(known_hosts_path(ctx), vm, None)
