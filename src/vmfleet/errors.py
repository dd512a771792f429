"""The one exception tree of vmfleet.

Every failure a user can see is a `FleetError`; each subclass carries what the
user needs to act on it (a position in a file, a VM, a host). The CLI maps the
classes to exit codes: spec problems exit 2, everything else 1.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """Where a value stands in a source file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a spec: where, which field, and what."""

    position: Position | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.position}: " if self.position else ""
        what = f"{self.field}: " if self.field else ""
        return f"{where}{what}{self.message}"


class FleetError(Exception):
    """Base of every error vmfleet raises on purpose."""

    exit_code = 1


class SpecError(FleetError):
    """The fleet file (or an imported file) is wrong. Carries every problem found."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(
            problems,
            key=lambda p: (
                p.position.file if p.position else "",
                p.position.line if p.position else 0,
                p.position.column if p.position else 0,
                p.field,
            ),
        )
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the fleet spec"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class UsageError(FleetError):
    """The command line asks for something that cannot be (an unknown VM, a bad index)."""

    exit_code = 2


class PlacementError(FleetError):
    """Some VMs cannot be placed on any host; the message lists each with its reasons."""

    exit_code = 1


class HypervisorError(FleetError):
    """A libvirt host failed or refused an operation."""

    def __init__(self, message: str, *, host: str | None = None, vm: str | None = None) -> None:
        self.host = host
        self.vm = vm
        prefix = "".join([f"host {host}: " if host else "", f"vm {vm}: " if vm else ""])
        super().__init__(prefix + message)


class HostUnreachableError(HypervisorError):
    """A host could not be connected to."""


class LiveMigrationRefusedError(HypervisorError):
    """libvirt cannot move this guest while it runs (CPU, devices, configuration); moving it
    stopped may still work."""


class NotOwnedError(HypervisorError):
    """An object of the same name exists on a host but vmfleet did not create it."""


class ImageError(FleetError):
    """An image is missing, corrupt, or fails its checksum."""


class StateError(FleetError):
    """The local state store is locked, corrupt, or from an incompatible version."""


class LockedError(StateError):
    """Another vmfleet process holds the fleet's lock."""


class GuestError(FleetError):
    """A guest did not answer (ssh, agent, port) as asked, or a command in it failed."""

    def __init__(self, message: str, *, vm: str | None = None) -> None:
        self.vm = vm
        super().__init__(f"vm {vm}: {message}" if vm else message)


class OperationTimeout(FleetError):  # noqa: N818 (a timeout, named as users say it)
    """An operation ran past its deadline and was cut off."""
