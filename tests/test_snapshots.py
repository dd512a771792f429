"""Snapshots on libvirt's test driver (in-process, internal snapshots only): group capture
with freeze-or-pause and the pause window, retention, revert to the power state of the time,
delete, timeouts that resume the VM, ownership, and the pure rules (members, kind, keep)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.e2e_support import vmfleet
from tests.support.testhost import join_abandoned_calls

from vmfleet.drivers.domainxml import SnapshotConfig
from vmfleet.drivers.libvirt import DomainState, LibvirtHost, SnapshotInfo
from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.engine import snapshots
from vmfleet.engine.context import FleetContext
from vmfleet.errors import NotOwnedError, OperationTimeout, UsageError
from vmfleet.spec.load import load
from vmfleet.state.store import Store

FLEET = """
fleet: {fleet}
hosts:
  local: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}
images: {{d: {{source: /x}}}}
defaults: {{image: d}}
snapshots: {{keep: 3}}
groups:
  app: {{members: [web], snapshots: {{keep: 1}}}}
  site: {{members: [app, db]}}
vms:
  web: {{replicas: 2}}
  db: {{}}
  efi: {{firmware: uefi}}
"""


def _domain_xml(fleet: str, vm: str, template: str, index: int | None) -> str:
    owner = OwnerMetadata(fleet=fleet, vm=vm, template=template, index=index, spec_hash="h")
    disk = "<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
    disk += "<source file='/var/lib/vmf-{fleet}.{vm}.{role}'/><target dev='{dev}'/>{ro}</disk>"
    return (
        f"<domain type='test'><name>{vm}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        f"<metadata>{owner.to_xml()}</metadata><os><type>hvm</type></os><devices>"
        + disk.format(fmt="qcow2", fleet=fleet, vm=vm, role="root", dev="vda", ro="")
        + disk.format(fmt="raw", fleet=fleet, vm=vm, role="seed.iso", dev="vdb", ro="<readonly/>")
        + "</devices></domain>"
    )


@pytest.fixture
def ctx(fleet_file: Callable[[str], Path], tmp_path: Path) -> Iterator[FleetContext]:
    """A fleet whose VMs (web-0, web-1, db, efi) run on the shared test driver."""
    fleet = f"snap{uuid.uuid4().hex[:6]}"
    loaded = load(fleet_file(FLEET.format(fleet=fleet)))
    context = FleetContext(loaded=loaded, store=Store(tmp_path / "s"), state_dir=tmp_path / "s")
    host = context.host("local")
    instances = context.instances()
    # VM names are global on the driver: rename each VM by the fleet, as if it were a prefix.
    for instance in instances:
        host.define(_domain_xml(fleet, instance.name, instance.template, instance.index))
        host.start(instance.name)
    try:
        yield context
    finally:
        join_abandoned_calls()
        for instance in instances:
            host.destroy(instance.name)
            host.undefine(instance.name)
        context.close()


def _state(ctx: FleetContext, vm: str) -> DomainState:
    info = ctx.host("local").get_domain(vm)
    assert info is not None
    return info.state


def test_a_group_is_captured_together_and_every_member_runs_again(
    ctx: FleetContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every snapshot call takes 0.3 s: the members stay paused across all of them
    monkeypatch.setenv("VMFLEET_FAULT_SNAPSHOT_DELAY", "0.3")
    chosen = snapshots.members(ctx, group="site")
    assert [m.vm for m in chosen] == ["web-0", "web-1", "db"]
    report = snapshots.create(ctx, chosen, "before-upgrade", group="site")
    assert report.ok, report.results
    # no guest agent on the test driver: every running member was paused, so crash-consistent
    assert {(r.vm, r.kind, r.consistency) for r in report.results} == {
        ("web-0", "internal", "crash"),
        ("web-1", "internal", "crash"),
        ("db", "internal", "crash"),
    }
    # from the first pause to the last resume: it spans at least one delayed snapshot call
    # and ends soon after the last (three calls run in parallel, not one after the other)
    assert report.pause_window is not None and 0.3 <= report.pause_window < 2.5
    assert all(_state(ctx, m.vm) is DomainState.RUNNING for m in chosen)


def test_listing_is_read_back_from_libvirt_without_vmfleet_state(
    ctx: FleetContext, tmp_path: Path
) -> None:
    snapshots.create(ctx, snapshots.members(ctx, vms=["db"]), "s1")
    fresh = FleetContext(
        loaded=ctx.loaded, store=Store(tmp_path / "other"), state_dir=tmp_path / "other"
    )
    rows = snapshots.listing(fresh, snapshots.members(fresh, vms=["db"]))
    assert [(r["vm"], r["name"], r["type"], r["vm_state"], r["consistency"]) for r in rows] == [
        ("db", "s1", "internal+memory", "running", "crash")
    ]


def test_retention_keeps_the_groups_newest_only(ctx: FleetContext) -> None:
    web = snapshots.members(ctx, group="app")
    snapshots.create(ctx, web, "b-first", group="app")
    report = snapshots.create(ctx, web, "a-second", group="app")  # same second, sorts first
    assert [r.pruned for r in report.results] == [("b-first",), ("b-first",)]
    assert [s.name for s in ctx.host("local").list_snapshots("web-0")] == ["a-second"]


def test_fleet_retention_applies_outside_a_group(ctx: FleetContext) -> None:
    db = snapshots.members(ctx, vms=["db"])
    for name in ("s1", "s2", "s3", "s4"):
        snapshots.create(ctx, db, name)
    assert [s.name for s in ctx.host("local").list_snapshots("db")] == ["s2", "s3", "s4"]


def test_revert_returns_each_vm_to_its_power_state_then(ctx: FleetContext) -> None:
    host = ctx.host("local")
    host.destroy("db")
    snapshots.create(ctx, snapshots.members(ctx, vms=["db", "web-0"]), "mixed")
    host.start("db")
    host.destroy("web-0")
    results = snapshots.revert(ctx, snapshots.members(ctx, vms=["db", "web-0"]), "mixed")
    assert [(r.vm, r.ok, r.detail) for r in results] == [
        ("db", True, "reverted (shutoff)"),
        ("web-0", True, "reverted (running)"),
    ]
    assert _state(ctx, "db") is DomainState.SHUTOFF
    assert _state(ctx, "web-0") is DomainState.RUNNING


def test_delete_removes_the_snapshot_and_an_unknown_one_is_reported(ctx: FleetContext) -> None:
    db = snapshots.members(ctx, vms=["db"])
    snapshots.create(ctx, db, "gone-soon")
    assert [r.ok for r in snapshots.delete(ctx, db, "gone-soon")] == [True]
    assert ctx.host("local").list_snapshots("db") == []
    (again,) = snapshots.delete(ctx, db, "gone-soon")
    assert not again.ok and "no snapshot 'gone-soon'" in again.detail


def test_a_hung_snapshot_times_out_names_the_vm_and_resumes_it(
    ctx: FleetContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMFLEET_FAULT_SNAPSHOT_DELAY", "3")
    report = snapshots.create(ctx, snapshots.members(ctx, vms=["db"]), "hangs", timeout=1)
    (result,) = report.results
    assert not result.ok
    assert "vm db: snapshot 'hangs' did not finish within 1 s" in result.detail
    assert _state(ctx, "db") is DomainState.RUNNING  # paused for the snapshot, resumed
    host = ctx.host("local")
    host.suspend("db")  # paused by its user before: the host call leaves it paused
    with pytest.raises(OperationTimeout, match=r"vm db: .* the VM stays paused, as it was"):
        host.snapshot_create("db", SnapshotConfig(name="h2", memory=True), timeout=1)
    assert _state(ctx, "db") is DomainState.PAUSED
    host.resume("db")


def test_the_safety_timer_resumes_members_while_a_snapshot_still_hangs(
    ctx: FleetContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMFLEET_FAULT_SNAPSHOT_DELAY", "5")
    reports: list[snapshots.CreateReport] = []
    worker = threading.Thread(
        target=lambda: reports.append(
            snapshots.create(ctx, snapshots.members(ctx, vms=["db"]), "slow", timeout=4, safety=0.2)
        )
    )
    worker.start()
    time.sleep(1.5)
    # the snapshot call still hangs, yet the safety timer has already resumed the member
    assert worker.is_alive()
    assert _state(ctx, "db") is DomainState.RUNNING
    worker.join()
    (report,) = reports
    assert not report.ok
    # released by the timer (0.2 s), long before the snapshot call gave up at 4 s
    assert report.pause_window is not None and report.pause_window < 1.5
    assert _state(ctx, "db") is DomainState.RUNNING


def test_snapshots_of_a_domain_vmfleet_does_not_own_are_refused() -> None:
    host = LibvirtHost("test:///default")
    with pytest.raises(NotOwnedError):
        host.snapshot_create("test", SnapshotConfig(name="x"), timeout=5)
    with pytest.raises(NotOwnedError):
        host.snapshot_delete("test", "x", timeout=5)


def test_members_resolve_nested_groups_and_refuse_unknown_names(ctx: FleetContext) -> None:
    assert snapshots.group_vms(ctx.loaded.spec, ctx.instances(), "site") == [
        "web-0",
        "web-1",
        "db",
    ]
    with pytest.raises(UsageError, match="no group 'nope'"):
        snapshots.members(ctx, group="nope")
    with pytest.raises(UsageError, match="no VM ghost"):
        snapshots.members(ctx, vms=["ghost"])
    with pytest.raises(UsageError, match="exactly one"):
        snapshots.members(ctx, vms=["db"], all_vms=True)


def test_keep_comes_from_the_named_group_then_the_vms_groups_then_the_fleet(
    ctx: FleetContext,
) -> None:
    spec, by_name = ctx.loaded.spec, {i.name: i for i in ctx.instances()}
    assert snapshots.keep_for(spec, by_name["db"], "site") == 3
    assert snapshots.keep_for(spec, by_name["web-0"], None) == 1
    assert snapshots.keep_for(spec, by_name["db"], None) == 3


@pytest.mark.parametrize(
    ("wanted", "uefi", "raw", "external_before", "kind"),
    [
        ("auto", False, False, False, "internal"),
        ("auto", True, False, False, "external"),  # UEFI: NVRAM is outside the disks
        ("auto", False, True, False, "external"),  # a raw disk holds no internal snapshot
        ("auto", False, False, True, "external"),  # do not mix on top of overlays
        ("external", False, False, False, "external"),
        ("internal", False, False, False, "internal"),
    ],
)
def test_snapshot_kind(
    wanted: str, uefi: bool, raw: bool, external_before: bool, kind: str
) -> None:
    got = snapshots.snapshot_kind(wanted, uefi=uefi, raw_writable=raw, has_external=external_before)
    assert got == kind


def test_internal_is_refused_where_it_cannot_work() -> None:
    with pytest.raises(UsageError, match="UEFI"):
        snapshots.snapshot_kind("internal", uefi=True, raw_writable=False, has_external=False)


def test_asking_internal_for_a_uefi_vm_is_refused_before_any_vm_pauses(ctx: FleetContext) -> None:
    chosen = snapshots.members(ctx, vms=["db", "efi"])
    with pytest.raises(UsageError, match=r"impossible with UEFI firmware \(efi\)"):
        snapshots.create(ctx, chosen, "inside", kind="internal")
    assert _state(ctx, "db") is DomainState.RUNNING
    assert ctx.host("local").list_snapshots("db") == []


def _snap(name: str, second: int, parent: str | None) -> SnapshotInfo:
    return SnapshotInfo(
        vm="v",
        name=name,
        created=datetime.fromtimestamp(second, tz=UTC),
        state=DomainState.RUNNING,
        parent=parent,
        current=False,
        kind="internal",
        memory=True,
        description=None,
    )


@pytest.mark.parametrize(
    ("keep", "pruned"),
    [(None, []), (5, []), (3, []), (2, ["z"]), (1, ["z", "b"])],
)
def test_retention_prunes_the_oldest_by_time_then_parent_chain(
    keep: int | None, pruned: list[str]
) -> None:
    chain = [_snap("z", 10, None), _snap("b", 20, "z"), _snap("a", 20, "b")]
    assert snapshots.to_prune(chain, keep, protect="a") == pruned


@pytest.mark.parametrize("name", ["Upper", "-lead", "has space", "a/b", ""])
def test_bad_snapshot_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="bad snapshot name"):
        snapshots.check_name(name)


def test_cli_needs_exactly_one_of_vms_group_or_all(
    fleet_file: Callable[[str], Path],
) -> None:
    path = fleet_file(FLEET.format(fleet="snapcli"))
    result = vmfleet("snapshot", "create", str(path), "only-a-name")
    assert result.returncode == 2
    assert "exactly one" in result.stderr
    listed = vmfleet("snapshot", "list", str(path), "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "[]"


def test_redefining_a_changed_vm_keeps_its_external_overlay(ctx: FleetContext) -> None:
    from vmfleet.drivers.domainxml import DiskConfig, FileSource, VolumeSource
    from vmfleet.engine import provision

    host = ctx.host("local")
    overlay = f"/var/lib/vmf-{ctx.fleet}.db.vda.snap-s1"
    xml = host.domain_xml("db", inactive=True).replace(f"/var/lib/vmf-{ctx.fleet}.db.root", overlay)
    host.define(xml)
    wanted = (
        DiskConfig(target="vda", source=VolumeSource(pool="p", volume="root")),
        DiskConfig(target="vdb", source=VolumeSource(pool="p", volume="seed"), readonly=True),
    )
    kept = provision.with_overlays(host, "db", wanted)
    assert kept[0].source == FileSource(path=overlay)
    assert kept[1] == wanted[1]
