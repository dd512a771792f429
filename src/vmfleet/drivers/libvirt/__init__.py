"""The libvirt driver: `LibvirtHost` (the hypervisor seam) and the typed results it returns.

One module per concern: `connection` (open, keepalive, errors, deadlines), `storage`,
`networks`, `domains`, `agent` (guest channel), `snapshots`, `probe` (the KVM boot probe and
its payload), `console`, `capabilities`, `stats` (bulk counters), `watch` (lifecycle events), and
`host`, which composes them into `LibvirtHost`.
"""

from vmfleet.drivers.libvirt.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    event_loop_running,
    start_event_loop,
)
from vmfleet.drivers.libvirt.host import LibvirtHost
from vmfleet.drivers.libvirt.probe import PROBE_COPY_ROUNDS, PROBE_DONE_MARKER, probe_payload
from vmfleet.drivers.libvirt.stats import DomainStats
from vmfleet.drivers.libvirt.storage import DEFAULT_POOL_PATH
from vmfleet.drivers.libvirt.types import (
    BootProbe,
    DomainInfo,
    DomainState,
    GuestCapability,
    HostCapabilities,
    KeepAlive,
    Lease,
    NetworkInfo,
    PoolInfo,
    ShutdownResult,
    SnapshotInfo,
    VolumeInfo,
)
from vmfleet.drivers.libvirt.watch import LifecycleEvent

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_POOL_PATH",
    "PROBE_COPY_ROUNDS",
    "PROBE_DONE_MARKER",
    "BootProbe",
    "DomainInfo",
    "DomainState",
    "DomainStats",
    "GuestCapability",
    "HostCapabilities",
    "KeepAlive",
    "Lease",
    "LibvirtHost",
    "LifecycleEvent",
    "NetworkInfo",
    "PoolInfo",
    "ShutdownResult",
    "SnapshotInfo",
    "VolumeInfo",
    "event_loop_running",
    "probe_payload",
    "start_event_loop",
]
