"""What `Fleet` methods return: frozen dataclasses holding the data the CLI renders (its
`-o json` output is these objects as plain data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from vmfleet.errors import FleetError

if TYPE_CHECKING:  # field types only: the engine loads when a command runs
    from vmfleet.core.drift import PinDrift
    from vmfleet.core.plan import Plan
    from vmfleet.engine.groups import MemberOutcome
    from vmfleet.engine.ha.status import HaVmState
    from vmfleet.engine.inflight import MigrationInFlight

Row = TypeVar("Row")


def from_row(kind: type[Row], row: Mapping[str, Any]) -> Row:
    """A frozen result from one of the engine's plain rows (lists become tuples)."""
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in row.items()})


@dataclass(frozen=True, slots=True)
class TemplateSummary:
    """One template of a validated fleet file: its replicas' names and first VM's sizes."""

    template: str
    replicas: int
    vms: tuple[str, ...]
    vcpus: int
    memory: str
    disk: str


@dataclass(frozen=True, slots=True)
class Validation:
    """A fleet file that validated (an invalid one raises SpecError with every problem)."""

    file: str
    format: str
    fleet: str
    templates: int
    vms: int
    groups: int
    valid: bool
    details: tuple[TemplateSummary, ...]


@dataclass(frozen=True, slots=True)
class ExpandedVm:
    """One VM the fleet file expands to (what `show` prints), before any host is asked."""

    name: str
    template: str
    index: int | None
    vcpus: int
    memory: str
    memory_bytes: int
    disk: str
    disk_bytes: int
    image: str | None
    mac: tuple[str, ...]
    ip: tuple[str, ...] | None
    networks: tuple[str, ...]
    groups: tuple[str, ...]
    labels: Mapping[str, str]
    host: str | None


@dataclass(frozen=True, slots=True)
class VmInfo:
    """One VM as the hosts report it now (`list`); `state` is a libvirt state, or `absent`
    (no host has it), `unreachable`, or `... (not in spec)` for a VM the spec dropped.
    `migration`: the move in flight (the VM is listed on its source until the move is
    done); `drift`: it runs elsewhere than its `host:` pin (moved only on request); for an
    HA VM, the cluster's state and `ha` (the cluster's and DRBD's view)."""

    name: str
    template: str
    host: str
    state: str
    vcpus: int | None
    memory: str | None
    disk: str | None
    ip: tuple[str, ...] | None
    uptime: str | None
    uptime_seconds: int | None
    user: str | None = None  # the login user (None for a VM the spec dropped)
    pending: bool = False  # a change is defined for its next boot and not running yet
    migration: MigrationInFlight | None = None
    drift: PinDrift | None = None
    ha: HaVmState | None = None  # an HA VM: its cluster's view (migration, fail count, disks)


@dataclass(frozen=True, slots=True)
class VmOutcome:
    """What one command did to one VM."""

    vm: str
    action: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0
    ready_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Confirm:
    """A question `up`/`down` ask the `confirm` callback before a destructive step:
    restart running VMs (`restart`), remove VMs the spec dropped (`prune`), or remove VMs
    (`remove`). Answering False skips the restart or the pruning, and cancels `down`."""

    action: Literal["restart", "prune", "remove"]
    vms: tuple[str, ...]

    @property
    def question(self) -> str:
        names = ", ".join(self.vms)
        if self.action == "restart":
            return f"restart running VMs {names}?"
        if self.action == "prune":
            return f"remove VMs no longer in the spec: {names}?"
        return f"remove {len(self.vms)} VM{'s' if len(self.vms) != 1 else ''}: {names}?"


def _failed(fleet: str, outcomes: tuple[VmOutcome, ...]) -> FleetError | None:
    failed = [o.vm for o in outcomes if not o.ok]
    if not failed:
        return None
    return FleetError(f"{len(failed)} of {len(outcomes)} VMs failed: {', '.join(failed)}")


@dataclass(frozen=True, slots=True)
class UpResult:
    """What `up` did: rolled back leftovers, pulled images, its plan, one outcome per VM it
    acted on, and what the groups' power step did (skipped when a VM failed)."""

    fleet: str
    plan: Plan
    outcomes: tuple[VmOutcome, ...]
    groups: tuple[MemberOutcome, ...] = ()
    group_error: str | None = None
    recovered: tuple[str, ...] = ()
    pulled: tuple[str, ...] = ()
    up_to_date: bool = False

    @property
    def ok(self) -> bool:
        return self.group_error is None and all(o.ok for o in self.outcomes)

    def raise_for_failures(self) -> None:
        """Raise FleetError naming the failed VMs, or GroupPowerError for a failed group
        step; nothing when everything worked."""
        error = _failed(self.fleet, self.outcomes)
        if error is not None:
            raise error
        if self.group_error is not None:
            from vmfleet.engine.groups import GroupPowerError

            raise GroupPowerError(self.group_error, outcomes=self.groups)


@dataclass(frozen=True, slots=True)
class Outcomes:
    """What `down`, `start`, `stop` and `reboot` did: one outcome per VM."""

    fleet: str
    outcomes: tuple[VmOutcome, ...]
    recovered: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    def raise_for_failures(self) -> None:
        """Raise FleetError naming the failed VMs; nothing when all worked."""
        error = _failed(self.fleet, self.outcomes)
        if error is not None:
            raise error


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """One snapshot of one VM, read from libvirt (`snapshot list`)."""

    vm: str
    name: str
    time: str
    type: str
    vm_state: str
    parent: str | None
    current: bool
    size_bytes: int | None
    consistency: str | None
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImageRow:
    """One image of the fleet (`image list`): its source, the cached file (or `missing` /
    `not downloaded`; for an image with `prepare:`, the prepared file or `not prepared`),
    the hosts holding its base volume, the disks backed by it, and its prepare recipe."""

    image: str
    source: str
    local: str
    size: str | None
    hosts: tuple[str, ...]
    dependants: tuple[str, ...]
    prepare: str | None = None
