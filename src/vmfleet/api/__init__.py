"""The Python API: `Fleet` does what the `vmfleet` command does and returns typed results.

Layer: between `cli` (which parses, asks and renders) and `engine` (which executes).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfleet.api.events import (
        Event,
        EventCallback,
        ImagePrepared,
        ImageProgress,
        Notice,
        Planned,
        Recovered,
        Stage,
        VmProgress,
    )
    from vmfleet.api.fleet import Fleet
    from vmfleet.api.moves import EvacuationResult, MoveResult
    from vmfleet.api.results import (
        Confirm,
        ExpandedVm,
        ImageRow,
        Outcomes,
        SnapshotRow,
        TemplateSummary,
        UpResult,
        Validation,
        VmInfo,
        VmOutcome,
    )
    from vmfleet.api.types import MigrationInFlight, PinDrift
    from vmfleet.engine.migrate import Report as MoveReport

# Loaded on first use (PEP 562): `from vmfleet.api import Fleet` loads the API's own modules,
# which load the engine inside the methods that need it (so `validate` never imports libvirt,
# placement or the domain XML builders); the engine's result types load when asked for.
_LAZY: dict[str, tuple[str, str]] = {
    "Confirm": ("vmfleet.api.results", "Confirm"),
    "EvacuationResult": ("vmfleet.api.moves", "EvacuationResult"),
    "Event": ("vmfleet.api.events", "Event"),
    "EventCallback": ("vmfleet.api.events", "EventCallback"),
    "ExpandedVm": ("vmfleet.api.results", "ExpandedVm"),
    "Fleet": ("vmfleet.api.fleet", "Fleet"),
    "ImagePrepared": ("vmfleet.api.events", "ImagePrepared"),
    "ImageProgress": ("vmfleet.api.events", "ImageProgress"),
    "ImageRow": ("vmfleet.api.results", "ImageRow"),
    "MigrationInFlight": ("vmfleet.api.types", "MigrationInFlight"),
    "MoveReport": ("vmfleet.engine.migrate", "Report"),
    "MoveResult": ("vmfleet.api.moves", "MoveResult"),
    "Notice": ("vmfleet.api.events", "Notice"),
    "Outcomes": ("vmfleet.api.results", "Outcomes"),
    "PinDrift": ("vmfleet.api.types", "PinDrift"),
    "Planned": ("vmfleet.api.events", "Planned"),
    "Recovered": ("vmfleet.api.events", "Recovered"),
    "SnapshotRow": ("vmfleet.api.results", "SnapshotRow"),
    "Stage": ("vmfleet.api.events", "Stage"),
    "TemplateSummary": ("vmfleet.api.results", "TemplateSummary"),
    "UpResult": ("vmfleet.api.results", "UpResult"),
    "Validation": ("vmfleet.api.results", "Validation"),
    "VmInfo": ("vmfleet.api.results", "VmInfo"),
    "VmOutcome": ("vmfleet.api.results", "VmOutcome"),
    "VmProgress": ("vmfleet.api.events", "VmProgress"),
}

__all__ = [
    "Confirm",
    "EvacuationResult",
    "Event",
    "EventCallback",
    "ExpandedVm",
    "Fleet",
    "ImagePrepared",
    "ImageProgress",
    "ImageRow",
    "MigrationInFlight",
    "MoveReport",
    "MoveResult",
    "Notice",
    "Outcomes",
    "PinDrift",
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
]


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'vmfleet.api' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value
