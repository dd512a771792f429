"""Groups on real guests (micro guests under TCG), checked from recorded times: tiers start
in order, delays are honoured, tier 2 starts only after tier 1 answers on SSH (watched from
outside vmfleet), power-off goes in reverse, nested groups walk inside their parent's tier,
a gate that times out stops the walk, and drift is reported until `power --sync`."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import libvirt
import pytest
from tests.e2e_support import SYSTEM_URI, leftovers, micro_fleet_yaml, unique_fleet, vmfleet

from vmfleet.drivers.guest import ssh_banner

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("groups")]


def group_fleet(tmp_path: Path, fleet: str, body: str) -> Path:
    """Micro guests with the given `vms:` and `groups:` (VM names are global: prefix g)."""
    base = micro_fleet_yaml(fleet, replicas=1, template="gunused").split("vms:")[0]
    path = tmp_path / "fleet.yaml"
    path.write_text(base + body)
    return path


def events(path: Path) -> list[tuple[float, str, str]]:
    """(time, vm, message) of every power transition vmfleet recorded, oldest first."""
    db = sqlite3.connect(path.parent / ".vmfleet" / "state.db")
    try:
        rows = db.execute(
            "SELECT at, vm, message FROM events WHERE kind = 'power' ORDER BY id"
        ).fetchall()
    finally:
        db.close()
    return [(r[0], r[1], r[2]) for r in rows]


def first(path: Path, vm: str, prefix: str, after: float = 0.0) -> float:
    times = [at for at, v, m in events(path) if v == vm and m.startswith(prefix) and at >= after]
    assert times, f"no {prefix!r} event for {vm}: {events(path)}"
    return times[0]


def domain_state(name: str) -> int:
    conn = libvirt.open(SYSTEM_URI)
    try:
        return int(conn.lookupByName(name).state()[0])
    finally:
        conn.close()


def run_json(*args: str) -> Any:
    result = vmfleet(*args, "-o", "json")
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def ssh_port(path: Path, vm: str) -> int:
    rows = run_json("list", str(path))
    (row,) = [r for r in rows if r["name"] == vm]
    return int(row["ip"][-1].split(":")[1])


class SilenceWatcher:
    """Polls a guest's SSH forward from outside vmfleet: remembers when a probe last found
    no banner before the first one that did (so the guest had not answered yet then)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.last_silent: float | None = None
        self.answered: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.answered is None:
            began = time.time()
            if ssh_banner("127.0.0.1", self.port, timeout=1.0, banner_timeout=1.0) is None:
                self.last_silent = began
                time.sleep(0.1)
            else:
                self.answered = began

    def __enter__(self) -> SilenceWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def group_of(status: dict[str, Any], name: str) -> dict[str, Any]:
    (g,) = [g for g in status["groups"] if g["name"] == name]
    return g


def condition(item: dict[str, Any], kind: str) -> tuple[str, str]:
    (c,) = [c for c in item["conditions"] if c["type"] == kind]
    return c["status"], c["reason"]


THREE_TIERS = """vms:
  gta: {group: app}
  gtb: {group: app}
  gtc: {group: app}
groups:
  app:
    power_state: PoweredOn
    shutdown_timeout: 10s
    boot_order:
      - {members: [gta], wait_for: "port:22", timeout: 90s}
      - {members: [gtb], delay: 6s}
      - {members: [gtc]}
"""


def test_tiers_start_in_order_gated_on_ssh_with_delays_and_stop_in_reverse(
    tmp_path: Path,
) -> None:
    fleet = unique_fleet("e2eg")
    path = group_fleet(tmp_path, fleet, THREE_TIERS)
    try:
        up = vmfleet("up", str(path))
        assert up.returncode == 0, up.stderr + up.stdout
        a, b, c = (first(path, vm, "started") for vm in ("gta", "gtb", "gtc"))
        assert a < b < c
        assert first(path, "gta", "ready (port:22)") <= b
        assert c - b >= 6.0  # tier 2's delay, counted from its start

        status = run_json("status", str(path))
        app = group_of(status, "app")
        assert condition(app, "Ready") == ("True", "AllMembersReady")
        assert app["lastUpdatedPowerStateTime"] is not None
        for member in app["members"]:
            assert condition(member, "GroupLinked")[0] == "True"
            assert condition(member, "PowerStateSynced") == ("True", "PowerStateMatches")
            assert condition(member, "PlacementReady") == ("True", "PlacementComputed")

        off = {o["vm"]: o for o in run_json("power", "off", str(path), "app")}
        assert off["gtb"]["started_at"] >= off["gtc"]["ready_at"]
        assert off["gta"]["started_at"] >= off["gtb"]["ready_at"]
        assert {domain_state(vm) for vm in off} == {libvirt.VIR_DOMAIN_SHUTOFF}

        # Power on again, watching tier 1's SSH from outside vmfleet.
        with SilenceWatcher(ssh_port(path, "gta")) as watcher:
            on = {o["vm"]: o for o in run_json("power", "on", str(path), "app")}
        assert watcher.answered is not None and watcher.last_silent is not None
        assert on["gtb"]["started_at"] > watcher.last_silent
        assert on["gta"]["started_at"] < watcher.answered
        assert on["gtc"]["started_at"] - on["gtb"]["started_at"] >= 6.0

        # Drift: a member stopped behind vmfleet's back is reported, not corrected by up.
        conn = libvirt.open(SYSTEM_URI)
        try:
            conn.lookupByName("gtc").destroy()
        finally:
            conn.close()
        app = group_of(run_json("status", str(path)), "app")
        (gtc,) = [m for m in app["members"] if m["name"] == "gtc"]
        assert condition(gtc, "PowerStateSynced") == ("False", "NotSynced")
        (ready,) = [c for c in app["conditions"] if c["type"] == "Ready"]
        assert ready["status"] == "False"
        assert ready["message"].startswith("1 of 3 members not ready: gtc")
        again = vmfleet("up", str(path))
        assert again.returncode == 0, again.stderr + again.stdout
        assert domain_state("gtc") == libvirt.VIR_DOMAIN_SHUTOFF

        synced = vmfleet("power", str(path), "app", "--sync")
        assert synced.returncode == 0, synced.stderr + synced.stdout
        assert domain_state("gtc") == libvirt.VIR_DOMAIN_RUNNING
        app = group_of(run_json("status", str(path)), "app")
        assert condition(app, "Ready") == ("True", "AllMembersReady")
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []


NESTED = """vms:
  gnx: {group: gnparent}
  gny: {}
  gnz: {}
  gnw: {}
groups:
  gnparent:
    power_state: PoweredOn
    shutdown_timeout: 10s
    boot_order:
      - {members: [gnx, gnchild]}
      - {members: [gnw]}
  gnchild:
    group: gnparent
    shutdown_timeout: 10s
    boot_order:
      - {members: [gny], wait_for: "port:22", timeout: 90s}
      - {members: [gnz]}
"""


def test_a_nested_group_walks_its_tiers_inside_its_parents_tier(tmp_path: Path) -> None:
    fleet = unique_fleet("e2eg")
    path = group_fleet(tmp_path, fleet, NESTED)
    try:
        up = vmfleet("up", str(path))
        assert up.returncode == 0, up.stderr + up.stdout
        x, y, z, w = (first(path, vm, "started") for vm in ("gnx", "gny", "gnz", "gnw"))
        # The child's first tier starts with the parent's first tier, its second after its
        # gate; the parent's second tier only after the whole child walk.
        assert max(x, y) < z < w
        assert first(path, "gny", "ready (port:22)") <= z
        assert first(path, "gnz", "ready (running)") <= w

        status = run_json("status", str(path))
        assert [g["name"] for g in status["groups"]] == ["gnparent", "gnchild"]
        assert group_of(status, "gnchild")["parent"] == "gnparent"
        (child,) = [m for m in group_of(status, "gnparent")["members"] if m["name"] == "gnchild"]
        assert child["kind"] == "VirtualMachineGroup"
        assert condition(child, "Ready") == ("True", "AllMembersReady")

        # A new member of a powered-on group is powered on by up; the others are untouched.
        path.write_text(
            path.read_text().replace("  gnw: {}\n", "  gnw: {}\n  gnv: {group: gnchild}\n")
        )
        grown = vmfleet("up", str(path))
        assert grown.returncode == 0, grown.stderr + grown.stdout
        assert domain_state("gnv") == libvirt.VIR_DOMAIN_RUNNING
        assert [vm for _at, vm, m in events(path) if m.startswith("started")][-1] == "gnv"
        assert len([m for _at, _vm, m in events(path) if m.startswith("started")]) == 5

        off = {o["vm"]: o for o in run_json("power", "off", str(path), "gnparent")}
        assert off["gnz"]["started_at"] >= off["gnw"]["ready_at"]
        assert min(off["gny"]["started_at"], off["gnx"]["started_at"]) >= off["gnz"]["ready_at"]
    finally:
        removed = vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == [], removed.stderr + removed.stdout


GATE_FAILS = """vms:
  gga: {group: gate}
  ggb: {group: gate}
groups:
  gate:
    power_state: PoweredOff
    boot_order:
      - {members: [gga], wait_for: command, command: "exit 1", timeout: 4s}
      - {members: [ggb]}
"""


def test_a_gate_that_times_out_stops_the_walk_and_names_the_member(tmp_path: Path) -> None:
    fleet = unique_fleet("e2eg")
    path = group_fleet(tmp_path, fleet, GATE_FAILS)
    try:
        up = vmfleet("up", str(path))
        assert up.returncode == 0, up.stderr + up.stdout
        # PoweredOff: up defines the members and starts none.
        assert domain_state("gga") == domain_state("ggb") == libvirt.VIR_DOMAIN_SHUTOFF

        on = vmfleet("power", "on", str(path), "gate")
        assert on.returncode == 1
        assert "tier 1 did not become ready" in on.stderr
        assert "gga" in on.stderr and "later tiers were not started" in on.stderr
        assert domain_state("gga") == libvirt.VIR_DOMAIN_RUNNING  # left as it is
        assert domain_state("ggb") == libvirt.VIR_DOMAIN_SHUTOFF
        assert [vm for _at, vm, m in events(path) if m.startswith("started")] == ["gga"]

        gate = group_of(run_json("status", str(path)), "gate")
        (ggb,) = [m for m in gate["members"] if m["name"] == "ggb"]
        assert condition(ggb, "PowerStateSynced") == ("False", "Failed")
        assert condition(gate, "Ready")[0] == "False"

        # Suspend pauses the running members at once; resume lets them run again.
        suspended = vmfleet("power", "suspend", str(path), "gate")
        assert suspended.returncode == 0, suspended.stderr + suspended.stdout
        assert domain_state("gga") == libvirt.VIR_DOMAIN_PAUSED
        assert domain_state("ggb") == libvirt.VIR_DOMAIN_SHUTOFF
        gate = group_of(run_json("status", str(path)), "gate")
        assert gate["powerState"] == "Suspended"
        (gga,) = [m for m in gate["members"] if m["name"] == "gga"]
        assert condition(gga, "PowerStateSynced") == ("True", "PowerStateMatches")
        resumed = vmfleet("power", "resume", str(path), "gate")
        assert resumed.returncode == 0, resumed.stderr + resumed.stdout
        assert domain_state("gga") == libvirt.VIR_DOMAIN_RUNNING
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []
