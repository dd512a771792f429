"""Snapshots of one VM, a group or the whole fleet: consistent capture, revert, delete, retention.

A snapshot of several VMs captures them at one moment: every running member is first made
still — its filesystems frozen through the guest agent where the agent answers
(application-consistent), otherwise the VM paused (crash-consistent) — then all members are
snapshotted in parallel, then all are thawed or resumed. Thaw/resume runs on every path out
(errors included) and also from a safety timer, so no guest stays frozen or paused when a
snapshot hangs. The pause window is the time from the first freeze to the last thaw.

Everything here is read back from libvirt: a snapshot's kind, the VM's power state at the
time and its consistency are in the snapshot itself (vmfleet writes the last two into its
description), so nothing depends on `.vmfleet/`.
"""

from __future__ import annotations

import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from vmfleet.core import groups
from vmfleet.core.expand import Instance
from vmfleet.drivers import names
from vmfleet.drivers.domainxml import FileSource, SnapshotConfig, SnapshotDisk, VolumeSource
from vmfleet.engine.apply import observe
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, GuestError, HypervisorError, UsageError
from vmfleet.spec.models import FleetSpec

if TYPE_CHECKING:
    from vmfleet.drivers.libvirt import LibvirtHost, SnapshotInfo

DEFAULT_TIMEOUT = 300.0
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


# --- create -----------------------------------------------------------------------------------


@dataclass
class _Quiesced:
    """Members made still, and how; releasing them is idempotent and thread-safe."""

    hosts: Callable[[str], LibvirtHost]
    how: dict[str, Consistency] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)
    first: float | None = None
    last: float | None = None
    problems: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def quiesce(self, member: Member, *, agent: bool) -> Consistency:
        """Freeze (when the agent answered the ping before) or pause one member."""
        host = self.hosts(member.host)
        with self.lock:
            if self.first is None:
                self.first = time.monotonic()
        if agent:
            try:
                host.fsfreeze(member.vm, timeout=30.0)
                how: Consistency = "application"
            except GuestError:
                host.suspend(member.vm)
                how = "crash"
        else:
            host.suspend(member.vm)
            how = "crash"
        with self.lock:
            self.how[member.vm] = how
            self.where[member.vm] = member.host
        return how

    def release(self) -> None:
        with self.lock:
            pending, self.how = dict(self.how), {}
            for vm, how in pending.items():
                host = self.hosts(self.where[vm])
                try:
                    if how == "application":
                        host.fsthaw(vm, timeout=30.0)
                    else:
                        host.resume(vm)
                except FleetError as err:
                    self.problems[vm] = f"{'thaw' if how == 'application' else 'resume'}: {err}"
            if pending:
                self.last = time.monotonic()


def create(
    ctx: FleetContext,
    chosen: Sequence[Member],
    name: str,
    *,
    group: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    safety: float | None = None,
    workers: int = 8,
    kind: str | None = None,
) -> CreateReport:
    """Snapshot every member at one moment (see the module docstring), then apply retention.

    `timeout` bounds each member's snapshot call; `safety` (default: timeout + 30 s) is when
    the safety timer thaws/resumes everything regardless. `kind` (internal, external, auto)
    overrides the VMs' `snapshot_type`.
    """
    check_name(name)
    started = time.monotonic()
    quiet = _Quiesced(hosts=ctx.host)
    running = [m for m in chosen if m.state == "running"]
    timer = threading.Timer(safety if safety is not None else timeout + 30.0, quiet.release)
    timer.daemon = True
    consistency: dict[str, Consistency] = {m.vm: "offline" for m in chosen}
    results: dict[str, MemberResult] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(chosen))))
    try:
        timer.start()
        # Ask every agent first, so the slow "no answer" cases do not stretch the window.
        agents = list(pool.map(lambda m: _agent_answers(ctx.host(m.host), m.vm), running))
        hows = pool.map(lambda m, a: quiet.quiesce(m, agent=a), running, agents)
        for member, how in zip(running, hows, strict=True):
            consistency[member.vm] = how

        def one(member: Member) -> MemberResult:
            t0 = time.monotonic()
            try:
                info = _create_one(ctx, member, name, consistency[member.vm], group, timeout, kind)
            except FleetError as err:
                return MemberResult(member.vm, False, str(err), seconds=time.monotonic() - t0)
            return MemberResult(
                member.vm,
                True,
                "created",
                kind=info.kind,
                consistency=consistency[member.vm],
                seconds=time.monotonic() - t0,
            )

        for result in pool.map(one, chosen):
            results[result.vm] = result
    finally:
        timer.cancel()
        quiet.release()
        pool.shutdown(wait=False)
    pause_window = (
        quiet.last - quiet.first if quiet.first is not None and quiet.last is not None else None
    )
    final = []
    for member in chosen:
        result = results.get(member.vm) or MemberResult(member.vm, False, "not snapshotted")
        if member.vm in quiet.problems:
            result = MemberResult(
                member.vm, False, f"{result.detail}; {quiet.problems[member.vm]}", result.kind
            )
        elif result.ok:
            result = _retain(ctx, member, result, name=name, group=group, timeout=timeout)
        final.append(result)
    _record(ctx, name, "create", final)
    return CreateReport(name, final, pause_window, time.monotonic() - started)


def _record(ctx: FleetContext, name: str, verb: str, results: Sequence[MemberResult]) -> None:
    """One `snapshot` event per member in the state store (`vmfleet events`)."""
    for r in results:
        how = f" ({r.consistency})" if r.ok and r.consistency else ""
        ctx.store.event(
            kind="snapshot",
            vm=r.vm,
            message=f"snapshot {name} {verb}: {r.detail if r.ok else 'failed: ' + r.detail}{how}",
        )


def _agent_answers(host: LibvirtHost, vm: str) -> bool:
    """Whether the member can be frozen. A host that cannot even ask an agent (a driver
    without guest agents) is the same answer as an agent that is silent: pause instead."""
    try:
        return host.agent_ping(vm, timeout=3.0)
    except HypervisorError:
        return False


def _create_one(
    ctx: FleetContext,
    member: Member,
    name: str,
    consistency: Consistency,
    group: str | None,
    timeout: float,
    kind: str | None,
) -> SnapshotInfo:
    host = ctx.host(member.host)
    existing = host.list_snapshots(member.vm)
    if any(s.name == name for s in existing):
        raise UsageError(f"vm {member.vm} already has a snapshot {name!r}")
    config = snapshot_config(
        ctx,
        host,
        member,
        name,
        description=describe(state=member.state, consistency=consistency, group=group),
        has_external=any(s.kind == "external" for s in existing),
        kind=kind,
    )
    return host.snapshot_create(member.vm, config, timeout=timeout)


def snapshot_config(
    ctx: FleetContext,
    host: LibvirtHost,
    member: Member,
    name: str,
    *,
    description: str,
    has_external: bool,
    kind: str | None = None,
) -> SnapshotConfig:
    """The snapshot XML for a member: which disks, internal or external, RAM or not."""
    root = ET.fromstring(host.domain_xml(member.vm))
    writable: list[tuple[str, str, str]] = []  # (target, format, path)
    skipped: list[str] = []
    for disk in root.iterfind("devices/disk"):
        target_el = disk.find("target")
        target = "" if target_el is None else str(target_el.get("dev"))
        driver = disk.find("driver")
        fmt = driver.get("type", "raw") if driver is not None else "raw"
        source = disk.find("source")
        if disk.get("device") != "disk" or disk.find("readonly") is not None or source is None:
            skipped.append(target)
            continue
        path = _disk_path(host, source.attrib)
        writable.append((target, fmt, path))
    fields = member.instance.fields if member.instance else None
    chosen = snapshot_kind(
        kind or (fields.snapshot_type if fields else "auto"),
        uefi=(fields.firmware == "uefi" if fields else root.find("os/loader") is not None),
        raw_writable=any(fmt != "qcow2" for _t, fmt, _p in writable),
        has_external=has_external,
    )
    no = tuple(SnapshotDisk(target=t, mode="no") for t in skipped)
    if chosen == "internal":
        return SnapshotConfig(
            name=name,
            description=description,
            memory=member.state in ("running", "paused"),
            disks=tuple(SnapshotDisk(target=t, mode="internal") for t, _f, _p in writable) + no,
        )
    overlays = tuple(
        SnapshotDisk(
            target=t,
            mode="external",
            file=str(
                Path(p).parent
                / names.volume(
                    fleet=ctx.fleet, vm=member.vm, role=names.overlay_role(disk=t, snapshot=name)
                )
            ),
        )
        for t, _f, p in writable
    )
    return SnapshotConfig(name=name, description=description, disks=overlays + no)


def _disk_path(host: LibvirtHost, source: dict[str, str]) -> str:
    if source.get("file"):
        return FileSource(path=source["file"]).path
    if source.get("pool") and source.get("volume"):
        vol = VolumeSource(pool=source["pool"], volume=source["volume"])
        return host.volume_path(vol.pool, vol.volume)
    raise FleetError(f"a disk with source {source} cannot be snapshotted by vmfleet")


def _retain(
    ctx: FleetContext,
    member: Member,
    result: MemberResult,
    *,
    name: str,
    group: str | None,
    timeout: float,
) -> MemberResult:
    keep = keep_for(ctx.loaded.spec, member.instance, group)
    if keep is None:
        return result
    host = ctx.host(member.host)
    pruned = []
    try:
        for old in to_prune(host.list_snapshots(member.vm), keep, protect=name):
            host.snapshot_delete(member.vm, old, timeout=timeout)
            pruned.append(old)
    except FleetError as err:
        return MemberResult(
            member.vm, False, f"created; retention failed: {err}", result.kind,
            result.consistency, tuple(pruned), result.seconds,
        )  # fmt: skip
    return MemberResult(
        member.vm, True, result.detail, result.kind, result.consistency, tuple(pruned),
        result.seconds,
    )  # fmt: skip


class Verb(Protocol):
    """`revert` or `delete`: the same shape, so the CLI runs either."""

    def __call__(
        self,
        ctx: FleetContext,
        chosen: Sequence[Member],
        name: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        workers: int = 8,
    ) -> list[MemberResult]: ...


# --- list, revert, delete ---------------------------------------------------------------------


def listing(ctx: FleetContext, chosen: Sequence[Member]) -> list[dict[str, object]]:
    """A row per snapshot per VM: name, time, type, VM state then, parent, size, consistency."""
    rows: list[dict[str, object]] = []
    for member in chosen:
        for snap in ctx.host(member.host).list_snapshots(member.vm):
            state, consistency = note(snap)
            rows.append(
                {
                    "vm": member.vm,
                    "name": snap.name,
                    "time": snap.created.isoformat(timespec="seconds"),
                    "type": snap.kind + ("+memory" if snap.memory else ""),
                    "vm_state": state or snap.state.value,
                    "parent": snap.parent,
                    "current": snap.current,
                    "size_bytes": snap.size_bytes,
                    "consistency": consistency,
                    "files": list(snap.files),
                }
            )
    return rows


def revert(
    ctx: FleetContext,
    chosen: Sequence[Member],
    name: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int = 8,
) -> list[MemberResult]:
    """Revert each member to its snapshot `name`, in parallel, each back to the power state
    it had then; a guest frozen for the snapshot (RAM included) is thawed again."""

    def one(member: Member) -> MemberResult:
        t0 = time.monotonic()
        host = ctx.host(member.host)
        try:
            listed = host.list_snapshots(member.vm)
            snap = next((s for s in listed if s.name == name), None)
            if snap is None:
                raise UsageError(f"vm {member.vm} has no snapshot {name!r}")
            if snap.kind == "internal" and any(s.kind == "external" for s in listed):
                raise UsageError(
                    f"vm {member.vm}: cannot revert to internal snapshot {name!r} while its "
                    "disks are external overlays; delete the external snapshots first"
                )
            from vmfleet.drivers.libvirt import DomainState  # libvirt loads on use

            noted, consistency = note(snap)
            state = DomainState(noted) if noted else snap.state
            host.snapshot_revert(member.vm, name, state=state, timeout=timeout)
            detail = f"reverted ({state.value})"
            if consistency == "application" and snap.memory and state is DomainState.RUNNING:
                host.fsthaw(member.vm, timeout=30.0)
                detail += ", thawed"
        except FleetError as err:
            return MemberResult(member.vm, False, str(err), seconds=time.monotonic() - t0)
        return MemberResult(member.vm, True, detail, snap.kind, seconds=time.monotonic() - t0)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(chosen)))) as pool:
        results = list(pool.map(one, chosen))
    _record(ctx, name, "revert", results)
    return results


def delete(
    ctx: FleetContext,
    chosen: Sequence[Member],
    name: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int = 8,
) -> list[MemberResult]:
    """Delete snapshot `name` of each member and free its space (overlays merged, removed)."""

    def one(member: Member) -> MemberResult:
        t0 = time.monotonic()
        try:
            removed = ctx.host(member.host).snapshot_delete(member.vm, name, timeout=timeout)
        except FleetError as err:
            return MemberResult(member.vm, False, str(err), seconds=time.monotonic() - t0)
        detail = "deleted" + (f" ({len(removed)} overlay file(s) removed)" if removed else "")
        return MemberResult(member.vm, True, detail, seconds=time.monotonic() - t0)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(chosen)))) as pool:
        results = list(pool.map(one, chosen))
    _record(ctx, name, "delete", results)
    return results
