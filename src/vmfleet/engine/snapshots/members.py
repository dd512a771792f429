"""Snapshots: the members a command acts on, and the pure decisions (names, kinds, retention,
the note vmfleet writes into a snapshot's description)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from vmfleet.core import groups
from vmfleet.core.expand import Instance
from vmfleet.core.snapshots import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT  # re-exported
from vmfleet.engine.apply import observe
from vmfleet.engine.context import FleetContext
from vmfleet.errors import UsageError
from vmfleet.spec.models import FleetSpec

if TYPE_CHECKING:
    from vmfleet.drivers.libvirt import SnapshotInfo


NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
Consistency = Literal["application", "crash", "offline"]
_NOTE_RE = re.compile(r"vmfleet: state=(\w+) consistency=(\w+)")


@dataclass(frozen=True, slots=True)
class Member:
    """A VM a snapshot command acts on, where it runs, and its state then."""

    vm: str
    host: str
    state: str
    instance: Instance | None


@dataclass(frozen=True, slots=True)
class MemberResult:
    vm: str
    ok: bool
    detail: str
    kind: str | None = None
    consistency: Consistency | None = None
    pruned: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class CreateReport:
    """What `create` did: one result per member, the pause window and the total time (s)."""

    name: str
    results: list[MemberResult]
    pause_window: float | None
    total: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


# --- choosing members -----------------------------------------------------------------------


def group_vms(spec: FleetSpec, instances: Sequence[Instance], group: str) -> list[str]:
    """The VMs in `group`, nested groups included (`core.groups.vms_of`, the one answer)."""
    if group not in spec.groups:
        raise UsageError(f"no group {group!r} in the fleet (groups: {', '.join(spec.groups)})")
    return groups.vms_of(spec, instances, group)


def members(
    ctx: FleetContext, *, vms: Sequence[str] = (), group: str | None = None, all_vms: bool = False
) -> list[Member]:
    """The fleet's existing VMs a command names: some VMs, a group, or all of them."""
    if sum([bool(vms), group is not None, all_vms]) != 1:
        raise UsageError("name VMs, or --group GROUP, or --all (exactly one of them)")
    instances = {i.name: i for i in ctx.instances()}
    observation = observe(ctx)
    have = {o.name: o for o in observation.vms}
    if all_vms:
        wanted = sorted(have)
    elif group is not None:
        wanted = group_vms(ctx.loaded.spec, list(instances.values()), group)
        if not wanted:
            raise UsageError(f"group {group!r} has no VMs")
    else:
        wanted = list(dict.fromkeys(vms))
    missing = [vm for vm in wanted if vm not in have]
    if missing:
        raise UsageError(f"no VM {', '.join(missing)} of fleet {ctx.fleet} on any host")
    return [Member(vm, have[vm].host, have[vm].state, instances.get(vm)) for vm in wanted]


# --- pure decisions ---------------------------------------------------------------------------


def keep_for(spec: FleetSpec, instance: Instance | None, group: str | None) -> int | None:
    """How many snapshots a VM keeps: the named group's `keep`, else the tightest `keep` of
    the groups it is in, else the fleet's; None keeps them all."""
    if group is not None and spec.groups[group].snapshots is not None:
        return spec.groups[group].snapshots.keep  # type: ignore[union-attr]
    keeps = [
        g.snapshots.keep
        for name, g in spec.groups.items()
        if g.snapshots is not None and instance is not None and name in _all_groups(spec, instance)
    ]
    if keeps:
        return min(keeps)
    return spec.snapshots.keep if spec.snapshots is not None else None


def _all_groups(spec: FleetSpec, instance: Instance) -> set[str]:
    return set(groups.memberships(spec, [instance]).get(instance.name, ()))


def to_prune(
    snapshots: Iterable[SnapshotInfo], keep: int | None, *, protect: str | None = None
) -> list[str]:
    """The snapshots retention removes: all but the newest `keep`, oldest first; never
    `protect` (the one just taken). libvirt times have whole seconds: snapshots of the same
    second are ordered by their depth in the parent chain."""
    listed = list(snapshots)
    parents = {s.name: s.parent for s in listed}

    def depth(name: str) -> int:
        seen: set[str] = set()
        parent = parents.get(name)
        while parent is not None and parent not in seen:
            seen.add(parent)
            parent = parents.get(parent)
        return len(seen)

    ordered = sorted(listed, key=lambda s: (s.created, depth(s.name), s.name))
    if keep is None or len(ordered) <= keep:
        return []
    return [s.name for s in ordered[: len(ordered) - keep] if s.name != protect]


def snapshot_kind(
    wanted: str, *, uefi: bool, raw_writable: bool, has_external: bool
) -> Literal["internal", "external"]:
    """internal or external: as asked, and for `auto` external where internal cannot work
    (UEFI firmware keeps NVRAM outside the disks, a raw disk holds no snapshots) or where
    external ones already sit on the disks."""
    if wanted == "internal":
        if uefi or raw_writable:
            raise UsageError(
                "snapshot_type internal is impossible here: "
                + ("UEFI firmware" if uefi else "a writable raw disk")
                + " (use external or auto)"
            )
        return "internal"
    if wanted == "external" or uefi or raw_writable or has_external:
        return "external"
    return "internal"


def describe(*, state: str, consistency: Consistency, group: str | None) -> str:
    """The note vmfleet leaves in a snapshot's description (read back by `note`)."""
    text = f"vmfleet: state={state} consistency={consistency}"
    return text + (f" group={group}" if group else "")


def note(info: SnapshotInfo) -> tuple[str | None, str | None]:
    """(power state, consistency) vmfleet wrote into a snapshot; (None, None) if none."""
    found = _NOTE_RE.search(info.description or "")
    return (found.group(1), found.group(2)) if found else (None, None)


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise UsageError(
            f"bad snapshot name {name!r}: use lowercase letters, digits, '.' and '-' "
            "(it also names overlay files)"
        )
