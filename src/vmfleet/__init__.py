"""vmfleet: run fleets of libvirt/QEMU virtual machines from one declarative file.

The command line is a thin layer over this library; what is importable from `vmfleet`
itself is the stable API, pinned by tests/test_public_api.py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from vmfleet.core.expand import Instance, Leases, expand
    from vmfleet.core.plan import Plan, diff
    from vmfleet.spec.load import LoadedFleet, load
    from vmfleet.spec.models import FleetSpec

# Loaded on first use (PEP 562): the spec models (pydantic) cost ~0.3 s to import, which
# `vmfleet --help` and the errors alone should not pay.
_LAZY = {
    "Instance": "vmfleet.core.expand",
    "Leases": "vmfleet.core.expand",
    "expand": "vmfleet.core.expand",
    "Plan": "vmfleet.core.plan",
    "diff": "vmfleet.core.plan",
    "LoadedFleet": "vmfleet.spec.load",
    "load": "vmfleet.spec.load",
    "FleetSpec": "vmfleet.spec.models",
}

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


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'vmfleet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
