"""How long operations took, recorded by whichever process ran them.

A `vmfleet up` in a terminal, a `migrate` run by a script and an action through `serve`'s
API run in different processes; each writes its operations' durations into the store's
`durations` table as they finish, and `serve` builds its histograms from that table when
it is scraped (`serve.metrics`). Only operations that end without an exception are
recorded: an `up` whose result has failed VMs counts, one stopped by bad input or a held
lock does not. Retention: see `Store.duration`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from vmfleet.state.store import Store

# Operation -> what its duration measures. The histograms' `operation` label takes these
# values only (rows with another operation, from a newer vmfleet, are not counted).
OPERATIONS = {
    "up": "one `up` run, from taking the fleet lock to its result (groups' power step included)",
    "ready": "a VM's readiness latency: from its start (by `up` or a group's power-on) to ready",
    "group-power": "one group power action (`vmfleet power`), from the lock to the last member",
    "vm-power": "one start, stop or reboot of VMs (`vmfleet start|stop|reboot`)",
    "snapshot": "one `snapshot create`, every member's snapshot and retention included",
    "snapshot-pause-window": "the window the members of one snapshot were frozen or paused",
    "migration": "one VM's move to another host, from preparing the destination to cleanup",
    "migration-downtime": "the pause of one move (libvirt's measure for live moves)",
    "ha-migration": "one HA VM's move by Pacemaker, from asking the cluster to the VM settled",
    "drain": "one `drain` of a host: every VM of the fleet moved off it",
    "rebalance": "one `rebalance --apply`: its moves carried out",
    "evacuate": "one `evacuate` of a host that is down: its VMs recreated elsewhere",
}


def record(store: Store, operation: str, seconds: float, *, subject: str | None = None) -> None:
    """Write one duration (`operation` is one of OPERATIONS; `subject` a VM, or None)."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}")  # a programming error
    store.duration(operation=operation, seconds=seconds, subject=subject)


@contextlib.contextmanager
def timed(store: Store, operation: str, *, subject: str | None = None) -> Iterator[None]:
    """Record how long the block took when it ends without an exception."""
    began = time.monotonic()
    yield
    record(store, operation, time.monotonic() - began, subject=subject)
