"""Ownership and cleanup on libvirt's test driver (in-process): names are unambiguous, one
fleet's `down` never touches another fleet's disks, a failed create leaves nothing behind,
and a cleanup that fails keeps its journal entry open for the next run."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmfleet.drivers import names
from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.engine import apply, provision
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError
from vmfleet.spec.load import load
from vmfleet.spec.validate import RESERVED_FLEET_NAMES
from vmfleet.state.store import Store

POOL = "default-pool"
FLEET = """
fleet: {fleet}
hosts:
  local: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}
defaults: {{memory: 64MiB, disk: 16MiB}}
vms:
{vms}
"""

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(fleet=label, vm=label, role=st.sampled_from(["root", "seed.iso", "data-3", "vda.snap-s1"]))
def test_a_volume_name_reads_back_as_the_fleet_and_vm_it_was_built_from(
    fleet: str, vm: str, role: str
) -> None:
    expected = None if fleet in names.RESERVED_FLEETS else (fleet, vm, role)
    assert names.parse_volume(names.volume(fleet=fleet, vm=vm, role=role)) == expected


def test_names_with_double_dashes_are_not_confused() -> None:
    # the old `vmf-<fleet>--<vm>--<role>` read this as fleet `relqa--x`, VM `y`
    assert names.parse_volume(names.volume(fleet="relqa", vm="x--y", role="root")) == (
        "relqa",
        "x--y",
        "root",
    )
    assert names.network(fleet="a", network="b-c") != names.network(fleet="a-b", network="c")


def test_the_spec_reserves_the_fleet_names_our_object_names_use() -> None:
    assert RESERVED_FLEET_NAMES == names.RESERVED_FLEETS


@pytest.fixture
def contexts(
    fleet_file: Callable[[str, str], Path], tmp_path: Path
) -> Iterator[Callable[[str, str], FleetContext]]:
    made: list[FleetContext] = []

    def make(fleet: str, vms: str) -> FleetContext:
        path = fleet_file(FLEET.format(fleet=fleet, vms=vms), f"{fleet}.yaml")
        state = tmp_path / f"state-{fleet}"
        ctx = FleetContext(loaded=load(path), store=Store(state), state_dir=state)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        host = ctx.host("local")
        for info in host.list_domains(fleet=ctx.fleet):
            if info.active:
                host.destroy(info.name)
            host.undefine(info.name)
        for volume in host.list_volumes(POOL):
            if volume.name.startswith(f"vmf-{ctx.fleet}."):
                host.delete_volume(POOL, volume.name)
        ctx.close()


def _fake_vm(ctx: FleetContext, vm: str, *, legacy: bool = False) -> list[str]:
    """A VM of `ctx`'s fleet as `up` leaves it: root, data disk and seed, and a domain with
    our metadata listing them (named as vmfleet 0.1.0 did with `legacy`)."""
    host = ctx.host("local")
    roles = ("root", "data-0", "seed.iso")
    volumes = [
        f"vmf-{ctx.fleet}--{vm}--{r}" if legacy else names.volume(fleet=ctx.fleet, vm=vm, role=r)
        for r in roles
    ]
    for name in volumes:
        host.create_volume(
            POOL, f"<volume><name>{name}</name><capacity>1048576</capacity></volume>"
        )
    owner = OwnerMetadata(fleet=ctx.fleet, vm=vm, template=vm, index=None, spec_hash="h")
    disks = "".join(
        f"<disk type='volume' device='disk'><source pool='{POOL}' volume='{n}'/>"
        f"<target dev='vd{chr(97 + i)}'/></disk>"
        for i, n in enumerate(volumes)
    )
    host.define(
        f"<domain type='test'><name>{vm}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        f"<metadata>{owner.to_xml()}</metadata><os><type>hvm</type></os>"
        f"<devices>{disks}</devices></domain>"
    )
    return volumes


def _volumes(ctx: FleetContext) -> set[str]:
    return {v.name for v in ctx.host("local").list_volumes(POOL)}


@pytest.mark.parametrize("legacy", [False, True], ids=["names", "names-of-0.1.0"])
def test_down_of_one_fleet_keeps_a_fleet_whose_vm_name_holds_double_dashes(
    contexts: Callable[[str, str], FleetContext], legacy: bool
) -> None:
    # under 0.1.0 names both VMs' root was `vmf-relqa--x--y--root`: it is never swept by name
    token = uuid.uuid4().hex[:4]
    first = contexts(f"relqa{token}", "  x--y: {data_disks: [{size: 1MiB}]}")
    second = contexts(f"relqa{token}--x", "  y: {data_disks: [{size: 1MiB}]}")
    vm = f"x--y{token}"
    kept = _fake_vm(first, vm, legacy=legacy)
    gone = _fake_vm(second, f"{token}a", legacy=legacy)  # VM names are global on the driver
    apply.down(second)
    assert set(kept) <= _volumes(first)
    assert not set(gone) & _volumes(first)
    assert first.host("local").get_domain(vm) is not None
    apply.down(first)
    assert not set(kept) & _volumes(first)


def test_a_failed_define_rolls_back_every_disk_it_made(
    contexts: Callable[[str, str], FleetContext],
) -> None:
    # the test driver cannot upload (the seed ISO), a failure after the data disks exist
    ctx = contexts(f"rb{uuid.uuid4().hex[:6]}", "  d: {data_disks: [{size: 1MiB}, {size: 1MiB}]}")
    (instance,) = ctx.instances()
    before = _volumes(ctx)
    phases: list[str] = []
    with pytest.raises(FleetError, match="virStorageVolUpload"):
        provision.create(ctx, instance, "local", lambda _vm, phase, _d: phases.append(phase))
    assert phases == ["disk", "seed"]
    assert _volumes(ctx) == before
    assert ctx.store.open_entries() == []


def test_a_cleanup_that_fails_stays_open_and_is_reported(
    contexts: Callable[[str, str], FleetContext],
) -> None:
    ctx = contexts(f"rc{uuid.uuid4().hex[:6]}", "  a: {}")
    # a journal entry for a volume whose pool does not exist: its cleanup fails every time
    ctx.store.intent(
        run="old",
        host="local",
        vm="a",
        kind="volume",
        target="vmf-x.a.root",
        detail={"pool": "no-such-pool"},
    )
    report = provision.recover(ctx)
    assert len(report) == 1 and report[0].startswith("could not roll back volume vmf-x.a.root")
    assert [e.target for e in ctx.store.open_entries()] == ["vmf-x.a.root"]
    assert any(kind == "cleanup-failed" for _at, _vm, kind, _msg in ctx.store.events())


def test_recover_removes_secret_temp_files_of_a_killed_run(
    contexts: Callable[[str, str], FleetContext],
) -> None:
    ctx = contexts(f"tmp{uuid.uuid4().hex[:6]}", "  a: {}")
    tmp = ctx.store.tmp_dir()
    assert tmp.stat().st_mode & 0o777 == 0o700
    (tmp / "seed-left.iso").write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    report = provision.recover(ctx)
    assert report == ["removed seed-left.iso, a temporary file of an interrupted run"]
    assert list(tmp.iterdir()) == []


def test_down_removes_what_it_reaches_and_names_the_unreachable_host(
    fleet_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    fleet = f"un{uuid.uuid4().hex[:6]}"
    path = fleet_file(
        f"""
fleet: {fleet}
hosts:
  local: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}
  gone: {{uri: "qemu+unix:///system?socket=/nonexistent/libvirt-sock"}}
defaults: {{memory: 64MiB, disk: 16MiB}}
vms: {{a: {{}}}}
""",
        "two.yaml",
    )
    ctx = FleetContext(loaded=load(path), store=Store(tmp_path / "st"), state_dir=tmp_path / "st")
    try:
        vm = f"a{fleet}"
        volumes = _fake_vm(ctx, vm)
        results = apply.down(ctx)
        assert [(r.vm, r.ok) for r in results] == [(vm, True), ("host gone", False)]
        assert "nothing removed there" in results[1].detail
        assert ctx.host("local").get_domain(vm) is None
        assert not set(volumes) & _volumes(ctx)
    finally:
        ctx.close()
