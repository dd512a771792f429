"""Provisioning on a real libvirtd under TCG, through the CLI as a user runs it:
up brings guests to ready, a second up is a no-op, down leaves nothing behind, and a run
killed at any moment converges on the next one without leaking volumes or domains."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.e2e_support import (
    leftovers,
    micro_fleet_yaml,
    unique_fleet,
    vmfleet,
)

from vmfleet.drivers import names

pytestmark = pytest.mark.e2e


def micro_fleet(
    tmp_path: Path, fleet: str, template: str, replicas: int = 3, ready: str = "port:22"
) -> Path:
    """VM names are global on a host: each test names its template differently."""
    path = tmp_path / "fleet.yaml"
    path.write_text(micro_fleet_yaml(fleet, replicas=replicas, ready=ready, template=template))
    return path


@pytest.mark.xdist_group("micro")
def test_micro_fleet_up_noop_list_down(tmp_path: Path) -> None:
    fleet = unique_fleet("e2em")
    path = micro_fleet(tmp_path, fleet, "m")
    try:
        first = vmfleet("up", str(path), "-o", "json")
        assert first.returncode == 0, first.stderr + first.stdout
        results = json.loads(first.stdout)
        assert sorted(r["vm"] for r in results) == ["m-0", "m-1", "m-2"]
        assert all(r["ok"] and r["ready_seconds"] is not None for r in results)

        listed = json.loads(vmfleet("list", str(path), "-o", "json").stdout)
        assert [(r["name"], r["state"], r["template"]) for r in listed] == [
            ("m-0", "running", "m"),
            ("m-1", "running", "m"),
            ("m-2", "running", "m"),
        ]
        ports = [int(r["ip"][0].split(":")[1]) for r in listed]
        assert len(set(ports)) == 3

        again = vmfleet("up", str(path))
        assert again.returncode == 0
        assert "up to date: nothing to do" in again.stdout

        plan = json.loads(vmfleet("plan", str(path), "-o", "json").stdout)
        assert {r["action"] for r in plan} == {"unchanged"}

        kept = vmfleet("down", str(path), input="n\n")
        assert kept.returncode == 1
        assert "remove 3 VMs: m-0, m-1, m-2?" in kept.stdout
        assert {
            r["state"] for r in json.loads(vmfleet("list", str(path), "-o", "json").stdout)
        } == {"running"}

        gone = vmfleet("down", str(path), "--yes")
        assert gone.returncode == 0, gone.stderr
        assert leftovers(fleet) == []
        assert json.loads(vmfleet("list", str(path), "-o", "json").stdout)[0]["state"] == "absent"
    finally:
        vmfleet("down", str(path), "--yes")


@pytest.mark.xdist_group("micro")
def test_kill_9_during_up_converges_with_nothing_leaked(tmp_path: Path) -> None:
    fleet = unique_fleet("e2ek")
    path = micro_fleet(tmp_path, fleet, "k", replicas=4, ready="none")
    db = tmp_path / ".vmfleet" / "state.db"
    try:
        # Kill at three moments of a run: its first journal intent, mid-way, late.
        killed = 0
        # Each run gets 1, 2 or 3 journal entries into its own work (a VM takes 3), so
        # every run still has VMs to create when it is killed.
        for entries in (1, 2, 3):
            baseline = _journal_count(db)
            proc = subprocess.Popen(
                [sys.executable, "-m", "vmfleet.cli.main", "up", str(path), "-j", "2"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                if _journal_count(db) >= baseline + entries:
                    break
                time.sleep(0.01)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                killed += 1
            proc.wait()
        assert killed >= 2, "the runs finished before they could be killed"
        final = vmfleet("up", str(path), "-o", "json")
        assert final.returncode == 0, final.stderr + final.stdout
        # Right after the recovering run, before any down: exactly the fleet's objects exist.
        _assert_only_the_fleet(fleet, [f"k-{i}" for i in range(4)], db)
        listed = json.loads(vmfleet("list", str(path), "-o", "json").stdout)
        assert [(r["name"], r["state"]) for r in listed] == [
            (f"k-{i}", "running") for i in range(4)
        ]
        assert vmfleet("up", str(path)).stdout.count("nothing to do") == 1
        assert vmfleet("down", str(path), "--yes").returncode == 0
        assert leftovers(fleet) == []
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM leases").fetchone()[0] == 0
            assert (
                conn.execute("SELECT count(*) FROM journal WHERE status = 'intent'").fetchone()[0]
                == 0
            )
    finally:
        vmfleet("down", str(path), "--yes")


def _assert_only_the_fleet(fleet: str, vms: list[str], db: Path) -> None:
    """No leak of a killed run survives its recovery: the host holds the fleet's domains and
    each one's root disk and seed, nothing else; no journal intent stays open; every lease
    is held by a VM of the spec."""
    found = leftovers(fleet)
    domains = sorted(x.removeprefix("domain ") for x in found if x.startswith("domain "))
    assert domains == vms, found
    volumes = [x.removeprefix("volume ") for x in found if x.startswith("volume ")]
    parsed = [names.parse_volume(v) for v in volumes]
    assert all(p is not None and p[1] in vms and p[2] in {"root", "seed.iso"} for p in parsed), (
        volumes
    )
    assert sorted(p[1] for p in parsed if p is not None and p[2] == "root") == vms, volumes
    assert [x for x in found if x.startswith("network ")] == []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert (
            conn.execute("SELECT count(*) FROM journal WHERE status = 'intent'").fetchone()[0] == 0
        )
        holders = {row[0] for row in conn.execute("SELECT DISTINCT vm FROM leases")}
    assert holders <= set(vms), holders


def _journal_count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=0.1) as conn:
            return int(conn.execute("SELECT count(*) FROM journal").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.xdist_group("micro")
def test_vms_dropped_from_the_spec_go_only_with_prune(tmp_path: Path) -> None:
    fleet = unique_fleet("e2ep")
    path = tmp_path / "fleet.yaml"
    with_spare = micro_fleet_yaml(fleet, replicas=2, template="p") + "  spare: {}\n"
    path.write_text(with_spare)
    try:
        assert vmfleet("up", str(path)).returncode == 0
        path.write_text(micro_fleet_yaml(fleet, replicas=2, template="p"))
        plan = json.loads(vmfleet("plan", str(path), "--prune", "-o", "json").stdout)
        assert [(r["vm"], r["action"]) for r in plan if r["action"] != "unchanged"] == [
            ("spare", "remove")
        ]
        kept = vmfleet("up", str(path))
        assert kept.returncode == 0
        assert "1 not in the spec" in kept.stdout or "nothing to do" in kept.stdout
        names = {r["name"] for r in json.loads(vmfleet("list", str(path), "-o", "json").stdout)}
        assert "spare" in names
        pruned = vmfleet("up", str(path), "--prune", "--yes")
        assert pruned.returncode == 0, pruned.stderr
        names = {r["name"] for r in json.loads(vmfleet("list", str(path), "-o", "json").stdout)}
        assert names == {"p-0", "p-1"}
        assert not [x for x in leftovers(fleet) if "spare" in x]
        assert vmfleet("down", str(path), "--yes").returncode == 0
        assert leftovers(fleet) == []
    finally:
        vmfleet("down", str(path), "--yes")
