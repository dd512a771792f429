"""Progress events a `Fleet` sends to its `on_event` callback while it works.

Every event is a small frozen dataclass; a callback tells them apart with `isinstance` or
`match`. Events come from worker threads: a callback must be thread-safe (and quick).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from vmfleet.core.plan import Plan


@dataclass(frozen=True, slots=True)
class Stage:
    """A stage of work on many VMs begins (`up web`, `groups of web`, `down web`, ...);
    the VMs it may touch are listed, each gets `VmProgress` events until done or failed."""

    title: str
    vms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VmProgress:
    """One VM moved to a phase: disk, seed, define, start, ready, stop, undefine, volumes,
    and finally `done` or `failed` (the detail says what happened)."""

    vm: str
    phase: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ImageProgress:
    """Bytes of an image downloaded so far (total None while the server has not said)."""

    image: str
    done: int
    total: int | None


@dataclass(frozen=True, slots=True)
class ImagePrepared:
    """An image's `prepare:` recipe: `building` as a build starts (minutes: the libguestfs
    tools boot a small VM), then `built` with each step's seconds; or `cached` when the
    prepared file was there already. `path` is the prepared file."""

    image: str
    state: Literal["building", "built", "cached"]
    path: str
    seconds: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Recovered:
    """Something an interrupted run left behind was settled before this run began: rolled
    back, or (a move whose destination runs) finished."""

    item: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should know that does not stop the work (a stale lock broken, a
    lost login key)."""

    message: str


@dataclass(frozen=True, slots=True)
class Planned:
    """`up` has its plan and is about to apply it (`prune`: orphans will be removed)."""

    plan: Plan
    prune: bool


Event = Stage | VmProgress | ImageProgress | ImagePrepared | Recovered | Notice | Planned
EventCallback = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The callback when none is given."""
    return
