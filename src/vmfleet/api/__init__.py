"""The Python API: `Fleet` does what the `vmfleet` command does and returns typed results.

Layer: between `cli` (which parses, asks and renders) and `engine` (which executes).
"""

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
from vmfleet.api.moves import EvacuationResult, MoveReport, MoveResult
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
