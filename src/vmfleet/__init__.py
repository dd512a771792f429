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

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from vmfleet.api import (
        Confirm,
        Event,
        ExpandedVm,
        Fleet,
        ImagePrepared,
        ImageProgress,
        ImageRow,
        Notice,
        Outcomes,
        Planned,
        Recovered,
        SnapshotRow,
        Stage,
        TemplateSummary,
        UpResult,
        Validation,
        VmInfo,
        VmOutcome,
        VmProgress,
    )

__version__ = "0.1.0"

# The Python API (`Fleet` and what it returns) imports the engine and libvirt: loaded on
# first use, so `import vmfleet` and `vmfleet --help` stay fast.
_API = {
    "Confirm",
    "Event",
    "ExpandedVm",
    "Fleet",
    "ImagePrepared",
    "ImageProgress",
    "ImageRow",
    "Notice",
    "Outcomes",
    "Planned",
    "Recovered",
    "SnapshotRow",
    "Stage",
    "TemplateSummary",
    "UpResult",
    "Validation",
    "VmInfo",
    "VmOutcome",
    "VmProgress",
}


def __getattr__(name: str) -> object:
    if name in _API:
        from vmfleet import api

        return getattr(api, name)
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vmfleet' has no attribute {name!r}")


__all__ = [
    "Confirm",
    "Event",
    "ExpandedVm",
    "Fleet",
    "FleetError",
    "FleetSpec",
    "GuestError",
    "HostUnreachableError",
    "HypervisorError",
    "ImageError",
    "ImagePrepared",
    "ImageProgress",
    "ImageRow",
    "Instance",
    "Leases",
    "LoadedFleet",
    "LockedError",
    "NotOwnedError",
    "Notice",
    "Outcomes",
    "PlacementError",
    "Plan",
    "Planned",
    "Position",
    "Problem",
    "Recovered",
    "SnapshotRow",
    "SpecError",
    "Stage",
    "StateError",
    "TemplateSummary",
    "UpResult",
    "UsageError",
    "Validation",
    "VmInfo",
    "VmOutcome",
    "VmProgress",
    "__version__",
    "diff",
    "expand",
    "load",
]
