"""Snapshots: create — make every running member still, snapshot all in parallel, thaw or
resume on every path out (and from a safety timer), then apply retention."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from vmfleet.drivers import names
from vmfleet.drivers.domainxml import FileSource, SnapshotConfig, SnapshotDisk, VolumeSource
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, GuestError, HypervisorError, UsageError
from vmfleet.state import durations

if TYPE_CHECKING:
    from vmfleet.drivers.libvirt import LibvirtHost, SnapshotInfo

from vmfleet.engine.snapshots.members import (
    DEFAULT_TIMEOUT,
    Consistency,
    CreateReport,
    Member,
    MemberResult,
    check_name,
    describe,
    keep_for,
    snapshot_kind,
    to_prune,
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
    uefi = [m.vm for m in chosen if m.instance and m.instance.fields.firmware == "uefi"]
    if kind == "internal" and uefi:
        # Refused before any VM is paused: libvirt cannot snapshot a pflash NVRAM.
        raise UsageError(
            f"internal snapshots are impossible with UEFI firmware ({', '.join(uefi)}): "
            "use --type external or auto"
        )
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
    report = CreateReport(name, final, pause_window, time.monotonic() - started)
    durations.record(ctx.store, "snapshot", report.total)
    if pause_window is not None:
        durations.record(ctx.store, "snapshot-pause-window", pause_window)
    return report


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
