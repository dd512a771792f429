"""Drift: a running VM that is not where its spec pins it.

Placement decides a VM's host once, when it is created; running VMs move only on request
(`vmfleet migrate`, `drain`). So a `host:` pin that names another host than the one a VM
runs on (the pin was changed, or a forced move took the VM away) is shown by `list`,
`status` and `plan`, never acted on by `up`. `node_preference` and preferred affinity are
preferences, not drift: a VM elsewhere is allowed (`rebalance` proposes the moves).
"""

from __future__ import annotations

from dataclasses import dataclass

from vmfleet.core.expand import Instance


@dataclass(frozen=True, slots=True)
class PinDrift:
    """`vm` runs on `host` while its spec pins it to `pinned`."""

    vm: str
    host: str
    pinned: str

    def describe(self) -> str:
        return (
            f"pinned to {self.pinned} (host:) but runs on {self.host}; not moved "
            f"(vmfleet migrate FILE {self.vm} --to {self.pinned} moves it)"
        )


def pin_drift(instance: Instance, host: str) -> PinDrift | None:
    """The drift of a VM the fleet wants that runs on `host`, or None when it has no pin or
    runs where the pin says."""
    pinned = instance.fields.host
    if pinned is None or pinned == host:
        return None
    return PinDrift(vm=instance.name, host=host, pinned=pinned)
