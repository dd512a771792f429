"""What read-only commands show of moves and pins, on libvirt's test driver (which cannot
migrate, so a move in flight is its journal entry, written as `vmfleet migrate` writes
it): `list`, `status -o json` and `hosts` show a migration in flight (and one whose process
was killed as interrupted) without writing anything; a VM off its `host:` pin is shown as
drift by `list`, `status` and `plan`, and neither `plan` nor `up` moves it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from tests.e2e_support import unique_fleet
from tests.support.snapshot import folder, libvirt_objects
from tests.support.testhost import TestDriverHost
from typer.testing import CliRunner

from vmfleet import Fleet
from vmfleet.api import PinDrift
from vmfleet.cli.main import app
from vmfleet.state.store import Store

# A second host: a test driver of its own (a custom node file), with a pool and no domains.
EMPTY_NODE = """<node><pool type='dir'><name>default-pool</name>
<capacity unit='GiB'>100</capacity><allocation>0</allocation>
<available unit='GiB'>100</available><target><path>/default-pool</path></target></pool></node>
"""


@pytest.fixture
def test_driver() -> Iterator[libvirt.virConnect]:
    """test:///default held open: the fleet's domains outlive each command's connection."""
    conn = libvirt.open("test:///default")
    try:
        yield conn
    finally:
        conn.close()


def fleet_file(tmp_path: Path, fleet: str, pin: str) -> Path:
    image = tmp_path / "base.qcow2"
    if not image.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    node = tmp_path / "h2.xml"
    node.write_text(EMPTY_NODE)
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"fleet: {fleet}\n"
        "hosts:\n"
        '  h1: {uri: "test:///default", domain_type: qemu, pool: default-pool}\n'
        f'  h2: {{uri: "test://{node}", domain_type: qemu, pool: default-pool}}\n'
        f"images: {{base: {{source: {image}}}}}\n"
        "defaults: {image: base, memory: 64MiB, disk: 16MiB}\n"
        f"vms:\n  m: {{host: {pin}}}\n  other: {{host: h1}}\n"
    )
    return path


def running(tmp_path: Path, prefix: str) -> tuple[str, Path]:
    """A new fleet whose VMs `m` and `other` run on h1, where their pins put them."""
    fleet = unique_fleet(prefix)
    path = fleet_file(tmp_path, fleet, "h1")
    with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
        opened.up().raise_for_failures()
        assert opened.plan().drift == []
    return fleet, path


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_migration_in_flight_shows_in_list_status_and_hosts_and_nothing_is_written(
    tmp_path: Path, test_driver: libvirt.virConnect
) -> None:
    fleet, path = running(tmp_path, "inf")
    state = tmp_path / ".vmfleet"
    store = Store(state)  # what `vmfleet migrate m --to h2` journals while it copies memory
    store.intent(
        run="r", host="h1", vm="m", kind="migration", target="m",
        detail={"to": "h2", "offline": False, "was_running": True, "pid": os.getpid()},
    )  # fmt: skip
    killed = store.intent(  # a move whose process was killed: the next command settles it
        run="k", host="h1", vm="other", kind="migration", target="other",
        detail={"to": "h2", "offline": True, "was_running": True, "pid": dead_pid()},
    )  # fmt: skip
    store.note(killed, phase="copy")
    store.close()

    def ours(name: str) -> bool:
        return fleet in name or name in ("m", "other")

    before = (libvirt_objects(test_driver, ours), folder(state))
    rows = {r["name"]: r for r in json.loads(cli("list", str(path), "-o", "json"))}
    move = rows["m"]["migration"]
    assert rows["m"]["state"] == "running" and rows["m"]["host"] == "h1"
    assert (move["source"], move["target"], move["mode"]) == ("h1", "h2", "live")
    assert (move["phase"], move["interrupted"]) == ("starting", False)
    assert move["memory_remaining"] is None  # the test driver runs no job: nothing to report
    stuck = rows["other"]["migration"]
    assert (stuck["mode"], stuck["phase"], stuck["interrupted"]) == ("offline", "copy", True)
    assert rows["m"]["drift"] is None

    table = cli("list", str(path))
    assert "running, migrating → h2 (starting)" in table
    assert "migration → h2 interrupted" in table

    status = json.loads(cli("status", str(path), "-o", "json"))
    assert status["groups"] == []
    assert {v["name"]: v["migration"]["target"] for v in status["vms"]} == {
        "m": "h2",
        "other": "h2",
    }
    assert "migrating → h2" in cli("status", str(path))

    hosts = {r["host"]: r for r in json.loads(cli("hosts", str(path), "-o", "json"))}
    assert hosts["h1"]["migrations"] == {"in": [], "out": ["m", "other"]}
    assert hosts["h2"]["migrations"] == {"in": ["m", "other"], "out": []}
    assert "2 migrating in" in cli("hosts", str(path))
    assert (libvirt_objects(test_driver, ours), folder(state)) == before

    with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
        moving = {vm.name: vm.migration.target for vm in opened.list() if vm.migration}
        assert moving == {"m": "h2", "other": "h2"}  # the same through the API
        opened.down(confirm=lambda _q: True)


def test_a_vm_off_its_pin_is_drift_that_plan_and_up_leave_where_it_runs(
    tmp_path: Path, test_driver: libvirt.virConnect
) -> None:
    fleet, path = running(tmp_path, "pin")
    fleet_file(tmp_path, fleet, "h2")  # the pin now names another host
    try:
        with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
            plan = opened.plan()
            assert plan.drift == [PinDrift(vm="m", host="h1", pinned="h2")]
            assert {s.host for s in plan.steps} <= {"h1"}  # no step on h2: nothing moves
            assert not [s for s in plan.steps if s.kind in ("create", "remove")]
            (m,) = [vm for vm in opened.list() if vm.name == "m"]
            assert m.drift == PinDrift(vm="m", host="h1", pinned="h2")

        rows = {r["name"]: r for r in json.loads(cli("list", str(path), "-o", "json"))}
        assert rows["m"]["drift"] == {"vm": "m", "host": "h1", "pinned": "h2"}
        assert rows["other"]["drift"] is None
        assert "running, drift: pinned to h2" in cli("list", str(path))
        status = json.loads(cli("status", str(path), "-o", "json"))
        assert [v["drift"]["pinned"] for v in status["vms"] if v["drift"]] == ["h2"]
        planned = {r["vm"]: r for r in json.loads(cli("plan", str(path), "-o", "json"))}
        assert planned["m"]["drift"] == {"pinned": "h2", "host": "h1"}
        assert planned["m"]["host"] == "h1"
        shown = cli("plan", str(path))
        assert "pinned to h2 (host:) but runs on h1; not moved" in shown
        assert "1 off their pinned host (not moved)" in shown

        with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
            opened.up().raise_for_failures()  # records the new spec; moves nothing
            (m,) = [vm for vm in opened.list() if vm.name == "m"]
            assert (m.host, m.state) == ("h1", "running")
            assert m.drift is not None and opened.plan().drift == [m.drift]
    finally:
        with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
            opened.down(confirm=lambda _q: True)
