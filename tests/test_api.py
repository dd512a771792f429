"""The Python API: `Fleet` drives plan, up, list, power verbs and down on libvirt's test
driver in-process, with the host factory (`TestDriverHost`: the test driver cannot upload
volumes) and the command runner injected at their seams, and reports progress as typed
events."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import libvirt
import pytest
from tests.e2e_support import unique_fleet
from tests.support.runners import Passthrough
from tests.support.testhost import TestDriverHost

from vmfleet import Fleet, SpecError, UsageError
from vmfleet.api import Confirm, Event, Planned, Stage, VmProgress
from vmfleet.drivers.libvirt import Lease, LibvirtHost
from vmfleet.engine.preflight import PreflightError


@pytest.fixture
def fleet_path(tmp_path: Path) -> Callable[..., Path]:
    """A fleet on test:///default under a fleet name no other test uses (the test driver's
    state is shared by every test in this process)."""
    image = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)

    def write(vms: str = "  web: {replicas: 2}\n  db: {}", extra: str = "") -> Path:
        path = tmp_path / "fleet.yaml"
        path.write_text(
            f"fleet: {unique_fleet('api')}\n"
            'hosts: {local: {uri: "test:///default", domain_type: qemu, pool: default-pool}}\n'
            f"images: {{base: {{source: {image}}}}}\n"
            "defaults: {image: base, memory: 64MiB, disk: 16MiB}\n"
            f"vms:\n{vms}\n{extra}"
        )
        return path

    return write


def test_up_list_and_down_through_the_api(fleet_path: Callable[..., Path]) -> None:
    events: list[Event] = []
    runner = Passthrough()
    with Fleet.open(
        fleet_path(), hosts=TestDriverHost.factory, runner=runner, on_event=events.append
    ) as fleet:
        assert [(a.vm, a.kind) for a in fleet.plan().actions] == [
            ("web-0", "create"),
            ("web-1", "create"),
            ("db", "create"),
        ]
        result = fleet.up()
        result.raise_for_failures()
        assert [(o.vm, o.action, o.ok) for o in result.outcomes] == [
            ("web-0", "create", True),
            ("web-1", "create", True),
            ("db", "create", True),
        ]
        assert [(vm.name, vm.state) for vm in fleet.list()] == [
            ("web-0", "running"),
            ("web-1", "running"),
            ("db", "running"),
        ]
        assert fleet.up().up_to_date
        down = fleet.down()
        assert sorted(o.vm for o in down.outcomes) == ["db", "web-0", "web-1"]
        assert {vm.state for vm in fleet.list()} == {"absent"}
    assert any(argv[0] == "ssh-keygen" for argv in runner.calls)  # local programs: the seam
    assert Stage(f"up {fleet.name}", ("web-0", "web-1", "db")) in events
    assert VmProgress("db", "done", "created") in events
    assert sum(isinstance(e, Planned) for e in events) == 1


def test_the_host_factory_is_the_seam_to_every_host(fleet_path: Callable[..., Path]) -> None:
    opened: list[tuple[str, str]] = []

    def hosts(uri: str, name: str) -> LibvirtHost:
        opened.append((uri, name))
        return TestDriverHost(uri, name=name)

    with Fleet.open(fleet_path("  solo: {}"), hosts=hosts) as fleet:
        fleet.up().raise_for_failures()
        assert [vm.state for vm in fleet.list()] == ["running"]
        fleet.down()
    assert opened == [("test:///default", "local")]


def test_targets_limit_up_down_and_power_to_a_template(fleet_path: Callable[..., Path]) -> None:
    with Fleet.open(fleet_path(), hosts=TestDriverHost.factory) as fleet:
        assert [a.vm for a in fleet.plan(["web"]).actions] == ["web-0", "web-1"]
        assert [o.vm for o in fleet.up(["web"]).outcomes] == ["web-0", "web-1"]
        assert [(v.name, v.state) for v in fleet.list()] == [
            ("web-0", "running"),
            ("web-1", "running"),
            ("db", "absent"),
        ]
        assert [o.vm for o in fleet.stop(["web"]).outcomes] == ["web-0", "web-1"]
        assert [v.state for v in fleet.list()][:2] == ["shutoff", "shutoff"]
        assert [o.vm for o in fleet.start(["web@1"]).outcomes] == ["web-1"]
        assert [o.vm for o in fleet.up(["db"]).outcomes] == ["db"]  # web-0 stays off
        assert [v.state for v in fleet.list()] == ["shutoff", "running", "running"]
        assert sorted(o.vm for o in fleet.down(["web"]).outcomes) == ["web-0", "web-1"]
        assert [v.state for v in fleet.list()] == ["absent", "absent", "running"]
        fleet.down()


def test_up_with_targets_confirms_and_reports_only_the_targeted_vms(
    fleet_path: Callable[..., Path],
) -> None:
    """Running VMs are awaited again by `up` (a killed run may never have seen them ready),
    but a targeted `up` answers for its targets only; an untargeted one for every VM."""
    vms = "  web: {replicas: 2, ready: running}\n  db: {ready: running}"
    with Fleet.open(fleet_path(vms), hosts=TestDriverHost.factory) as fleet:
        first = fleet.up(["web@1"])
        assert [(o.vm, o.action) for o in first.outcomes] == [("web-1", "create")]
        second = fleet.up(["db"])
        assert [(o.vm, o.action) for o in second.outcomes] == [("db", "create")]
        again = fleet.up(["db"])
        assert again.up_to_date
        assert [(o.vm, o.action, o.detail) for o in again.outcomes] == [
            ("db", "unchanged", "unchanged; ready")
        ]
        rest = fleet.up()
        assert [(o.vm, o.action) for o in rest.outcomes] == [
            ("web-0", "create"),
            ("web-1", "unchanged"),
            ("db", "unchanged"),
        ]
        assert all(o.ready_seconds is not None for o in rest.outcomes)
        fleet.down()


def test_group_targets_act_on_nested_members(fleet_path: Callable[..., Path]) -> None:
    groups = "groups:\n  outer: {members: [db, inner]}\n  inner: {members: [web]}\n"
    with Fleet.open(fleet_path(extra=groups), hosts=TestDriverHost.factory) as fleet:
        assert sorted(o.vm for o in fleet.up(["outer"]).outcomes) == ["db", "web-0", "web-1"]
        assert sorted(o.vm for o in fleet.reboot(["inner"]).outcomes) == ["web-0", "web-1"]
        assert sorted(o.vm for o in fleet.down(["outer"]).outcomes) == ["db", "web-0", "web-1"]


def test_down_asks_and_a_no_cancels(fleet_path: Callable[..., Path]) -> None:
    asked: list[Confirm] = []

    def no(question: Confirm) -> bool:
        asked.append(question)
        return False

    with Fleet.open(fleet_path("  solo: {}"), hosts=TestDriverHost.factory) as fleet:
        fleet.up().raise_for_failures()
        with pytest.raises(Exception, match="cancelled: nothing was removed"):
            fleet.down(confirm=no)
        assert asked == [Confirm("remove", ("solo",))]
        assert asked[0].question == "remove 1 VM: solo?"
        assert [v.state for v in fleet.list()] == ["running"]
        fleet.down()


def test_an_unknown_target_is_a_usage_error(fleet_path: Callable[..., Path]) -> None:
    with (
        Fleet.open(fleet_path(), hosts=TestDriverHost.factory) as fleet,
        pytest.raises(UsageError, match="'nope'"),
    ):
        fleet.up(["nope"])


def test_open_rejects_a_bad_file_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("vms:\n  web: {replicas: -1}\n")
    with pytest.raises(SpecError, match=r"bad\.yaml:2"):
        Fleet.open(path)


def test_validate_and_show_touch_no_state(fleet_path: Callable[..., Path]) -> None:
    path = fleet_path()
    with Fleet.open(path) as fleet:
        summary = fleet.validate()
        assert (summary.templates, summary.vms, summary.valid) == (2, 3, True)
        assert [vm.name for vm in fleet.show()] == ["web-0", "web-1", "db"]
    assert not (path.parent / ".vmfleet").exists()


def test_the_api_example_runs(
    fleet_path: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/api.py, the README's Python example, on the test driver."""
    import runpy

    example = runpy.run_path(str(Path(__file__).parent.parent / "examples" / "api.py"))
    path = fleet_path()
    example["main"](str(path), down=True, hosts=TestDriverHost.factory)
    out = capsys.readouterr().out
    assert "plan: 3 to create" in out
    assert "  db: done created" in out
    assert "web-0        running    local      127.0.0.1:" in out
    with Fleet.open(path, hosts=TestDriverHost.factory) as fleet:
        assert {vm.state for vm in fleet.list()} == {"absent"}


def test_day_two_methods_on_the_test_driver(fleet_path: Callable[..., Path]) -> None:
    groups = "groups:\n  app: {members: [db, web], power_state: PoweredOn}\n"
    with Fleet.open(fleet_path(extra=groups), hosts=TestDriverHost.factory) as fleet:
        up = fleet.up()
        up.raise_for_failures()
        assert sorted(o.vm for o in up.groups) == ["db", "web-0", "web-1"]  # the group starts them
        (app,) = fleet.status()
        assert (app.name, app.conditions[0].status) == ("app", "True")
        off = fleet.power("app", "off")
        assert sorted(o.vm for o in off) == ["db", "web-0", "web-1"]
        assert {v.state for v in fleet.list()} == {"shutoff"}
        assert fleet.status("app")[0].conditions[0].status == "True"  # wanted off, is off
        assert "Host web-0\n" in fleet.ssh_config()
        inventory = fleet.inventory()
        assert sorted(inventory["all"]["children"]["group_app"]["hosts"]) == [  # type: ignore[index]
            "db",
            "web-0",
            "web-1",
        ]
        assert [(i.image, i.hosts) for i in fleet.image_list()] == [("base", ("local",))]
        fleet.down()


def test_an_unowned_network_of_our_name_is_refused_before_anything(
    fleet_path: Callable[..., Path],
) -> None:
    path = fleet_path(
        "  solo: {network: own}", extra="networks:\n  own: {mode: isolated, cidr: 10.77.0.0/24}"
    )
    with Fleet.open(path, hosts=TestDriverHost.factory) as fleet:
        ours = f"vmf-{fleet.name}.own"
        conn = libvirt.open("test:///default")  # the driver state this process shares
        try:
            net = conn.networkDefineXML(f"<network><name>{ours}</name></network>")
            with pytest.raises(PreflightError) as caught:
                fleet.up()
            assert caught.value.exit_code == 2
            assert f"network named {ours!r} already exists and belongs to nobody" in str(
                caught.value
            )
            assert [d.name() for d in conn.listAllDomains() if d.name() == "solo"] == []
            net.undefine()
        finally:
            conn.close()


class LeasingHost(TestDriverHost):
    """The test driver cannot list DHCP leases: this host (through the factory seam) has
    some on every network."""

    __test__ = False
    leases: tuple[Lease, ...] = ()

    def dhcp_leases(self, network: str) -> list[Lease]:
        return list(self.leases)


def test_macs_and_static_ips_held_by_dhcp_leases_are_refused(
    fleet_path: Callable[..., Path],
) -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    LeasingHost.leases = (
        Lease(mac="52:54:00:99:99:99", ip="192.168.122.50", hostname="other", expiry=at),
        Lease(mac="52:54:00:00:00:07", ip="192.168.122.60", hostname="stranger", expiry=at),
        # its own earlier lease (same MAC, its own name): no clash
        Lease(mac="52:54:00:00:00:08", ip="192.168.122.61", hostname="mine", expiry=at),
    )
    path = fleet_path(
        "  web: {nics: [{network: ex, mac_addresses: ['52:54:00:00:00:07'],"
        " ips: [192.168.122.50]}]}\n"
        "  mine: {nics: [{network: ex, mac_addresses: ['52:54:00:00:00:08']}]}",
        extra="networks:\n  ex: {mode: existing, name: default, cidr: 192.168.122.0/24}",
    )
    with (
        Fleet.open(path, hosts=LeasingHost.factory) as fleet,
        pytest.raises(PreflightError) as caught,
    ):
        fleet.up()
    assert sorted(caught.value.problems) == [
        "host local: web (network 'ex'): IP 192.168.122.50 is leased by DHCP of 'default' "
        "to MAC 52:54:00:99:99:99",
        "host local: web (network 'ex'): MAC 52:54:00:00:00:07 holds a DHCP lease of "
        "'default' for 'stranger'",
    ]
