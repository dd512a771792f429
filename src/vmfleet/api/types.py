"""The engine's result types and endpoint helpers that `Fleet` methods hand out, under the
API's name, so callers (the CLI included) need nothing from the engine itself."""

from vmfleet.core.drift import PinDrift
from vmfleet.engine.access import (
    Endpoint,
    dynamic_inventory,
    forward_argv,
    hostvars,
    require_reachable,
    scp_argv,
    ssh_argv,
)
from vmfleet.engine.execute import ExecResult
from vmfleet.engine.groups import GroupPowerError, MemberOutcome
from vmfleet.engine.ha.status import HaVmState
from vmfleet.engine.inflight import MigrationInFlight
from vmfleet.engine.snapshots import DEFAULT_TIMEOUT as SNAPSHOT_TIMEOUT
from vmfleet.engine.snapshots import CreateReport as SnapshotReport
from vmfleet.engine.snapshots import MemberResult as SnapshotResult
from vmfleet.state.events import Event as LogEvent

__all__ = [
    "SNAPSHOT_TIMEOUT",
    "Endpoint",
    "ExecResult",
    "GroupPowerError",
    "HaVmState",
    "LogEvent",
    "MemberOutcome",
    "MigrationInFlight",
    "PinDrift",
    "SnapshotReport",
    "SnapshotResult",
    "dynamic_inventory",
    "forward_argv",
    "hostvars",
    "require_reachable",
    "scp_argv",
    "ssh_argv",
]
