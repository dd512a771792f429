"""vmfleet: run fleets of libvirt/QEMU virtual machines from one declarative file.

The command line is a thin layer over this library; what is importable from `vmfleet`
itself is the stable API, pinned by tests/test_public_api.py.
"""

from vmfleet.core.expand import Instance, Leases, expand
from vmfleet.core.plan import Plan, diff
from vmfleet.errors import (
    FleetError,
    GuestError,
    HostUnreachableError,
    HypervisorError,
    ImageError,
    LockedError,
    NotOwnedError,
    PlacementError,
    Position,
    Problem,
    SpecError,
    StateError,
    UsageError,
)
from vmfleet.spec.load import LoadedFleet, load
from vmfleet.spec.models import FleetSpec

__version__ = "0.1.0"

__all__ = [
    "FleetError",
    "FleetSpec",
    "GuestError",
    "HostUnreachableError",
    "HypervisorError",
    "ImageError",
    "Instance",
    "Leases",
    "LoadedFleet",
    "LockedError",
    "NotOwnedError",
    "PlacementError",
    "Plan",
    "Position",
    "Problem",
    "SpecError",
    "StateError",
    "UsageError",
    "__version__",
    "diff",
    "expand",
    "load",
]
