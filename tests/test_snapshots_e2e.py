"""Snapshots on a real libvirtd under TCG, through the CLI: a group of micro guests captured
at one moment and reverted together, external overlays reverted and merged away (live and
offline), a hung snapshot cut off with the VM resumed (a file in a Debian guest that a revert
brings back, frozen through the guest agent: test_debian_guests_e2e)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.e2e_support import (
    leftovers,
    micro_fleet_yaml,
    unique_fleet,
    vmfleet,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("snapshots")]

POOL = Path("/var/lib/libvirt/images")


def _json(*args: str) -> object:
    result = vmfleet(*args, "-o", "json")
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def _domstate(vm: str) -> str:
    return subprocess.run(
        ["virsh", "domstate", vm], capture_output=True, text=True, check=True
    ).stdout.strip()


def _overlays(fleet: str) -> list[str]:
    return sorted(p.name for p in POOL.glob(f"vmf-{fleet}.*.snap-*"))


def _backing(path: Path) -> str | None:
    info = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    backing = json.loads(info.stdout).get("backing-filename")
    return None if backing is None else str(backing)


def test_a_group_of_three_is_captured_at_once_kept_to_one_and_reverted(tmp_path: Path) -> None:
    fleet = unique_fleet("e2es")
    path = tmp_path / "fleet.yaml"
    text = micro_fleet_yaml(fleet, replicas=3, ready="port:22", template="sgrp")
    path.write_text(text + "groups:\n  trio: {members: [sgrp], snapshots: {keep: 1}}\n")
    vms = ["sgrp-0", "sgrp-1", "sgrp-2"]
    try:
        assert vmfleet("up", str(path)).returncode == 0
        report = _json("snapshot", "create", str(path), "--group", "trio", "before")
        assert isinstance(report, dict)
        assert report["pause_window_seconds"] is not None
        assert [(m["vm"], m["ok"], m["consistency"]) for m in report["members"]] == [
            (vm, True, "crash")
            for vm in vms  # no guest agent in the micro guest: paused
        ]
        assert all(_domstate(vm) == "running" for vm in vms)
        assert vmfleet("stop", str(path), "sgrp-1").returncode == 0
        reverted = vmfleet("snapshot", "revert", str(path), "--all", "before")
        assert reverted.returncode == 0, reverted.stderr + reverted.stdout
        assert all(_domstate(vm) == "running" for vm in vms)  # the state at the snapshot
        second = _json("snapshot", "create", str(path), "--group", "trio", "after")
        assert isinstance(second, dict)
        assert [m["pruned"] for m in second["members"]] == [["before"]] * 3  # keep: 1
        listed = _json("snapshot", "list", str(path))
        assert isinstance(listed, list)
        assert [(r["vm"], r["name"], r["type"], r["vm_state"]) for r in listed] == [
            (vm, "after", "internal+memory", "running") for vm in vms
        ]
        deleted = vmfleet("snapshot", "delete", str(path), "--group", "trio", "after")
        assert deleted.returncode == 0, deleted.stderr
        assert _json("snapshot", "list", str(path)) == []
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []


def test_external_snapshots_revert_merge_back_and_leave_nothing(tmp_path: Path) -> None:
    fleet = unique_fleet("e2es")
    path = tmp_path / "fleet.yaml"
    path.write_text(
        micro_fleet_yaml(
            fleet,
            replicas=1,
            ready="port:22",
            template="sext",
            extra_defaults="  snapshot_type: external",
        )
    )
    root = POOL / f"vmf-{fleet}.sext.root"
    try:
        assert vmfleet("up", str(path)).returncode == 0
        for name in ("e1", "e2"):
            created = vmfleet("snapshot", "create", str(path), "sext", name)
            assert created.returncode == 0, created.stderr + created.stdout
        assert _overlays(fleet) == [f"vmf-{fleet}.sext.vda.snap-{n}" for n in ("e1", "e2")]
        listed = _json("snapshot", "list", str(path))
        assert isinstance(listed, list)
        assert [(r["name"], r["type"], r["parent"]) for r in listed] == [
            ("e1", "external", None),
            ("e2", "external", "e1"),
        ]
        assert all(isinstance(r["size_bytes"], int) for r in listed)
        older = vmfleet("snapshot", "revert", str(path), "sext", "e1")
        assert older.returncode == 1 and "only the newest external snapshot" in older.stderr
        assert vmfleet("snapshot", "revert", str(path), "sext", "e2").returncode == 0
        assert _domstate("sext") == "running"
        # e1 has e2 on top: a live commit of e1's overlay into the root disk, e2 rebased on it
        assert vmfleet("snapshot", "delete", str(path), "sext", "e1").returncode == 0
        assert _overlays(fleet) == [f"vmf-{fleet}.sext.vda.snap-e2"]
        assert _backing(POOL / f"vmf-{fleet}.sext.vda.snap-e2") == str(root)
        # e2 is the disk in use: an active commit and pivot back to the root disk
        assert vmfleet("snapshot", "delete", str(path), "sext", "e2").returncode == 0
        assert _overlays(fleet) == []
        # the same with the VM off: qemu-img commit, and the domain points at the root again
        assert vmfleet("snapshot", "create", str(path), "sext", "e3").returncode == 0
        assert vmfleet("stop", str(path), "sext").returncode == 0
        assert vmfleet("snapshot", "delete", str(path), "sext", "e3").returncode == 0
        assert _overlays(fleet) == []
        assert vmfleet("start", str(path), "sext").returncode == 0
        assert _domstate("sext") == "running"
        assert vmfleet("snapshot", "create", str(path), "sext", "e4").returncode == 0
        assert _overlays(fleet) == [f"vmf-{fleet}.sext.vda.snap-e4"]
        # a spec change that redefines the VM keeps it on the overlay
        path.write_text(path.read_text().replace("memory: 128MiB", "memory: 160MiB"))
        changed = vmfleet("up", str(path), "--restart", "--yes")
        assert changed.returncode == 0, changed.stderr + changed.stdout
        blk = subprocess.run(
            ["virsh", "domblklist", "sext"], capture_output=True, text=True, check=True
        ).stdout
        assert f"vmf-{fleet}.sext.vda.snap-e4" in blk
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []  # the overlay of e4 went with the VM
    assert _overlays(fleet) == []


def test_a_hung_snapshot_times_out_names_the_vm_and_resumes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = unique_fleet("e2es")
    path = tmp_path / "fleet.yaml"
    path.write_text(micro_fleet_yaml(fleet, replicas=1, template="shang"))
    try:
        assert vmfleet("up", str(path)).returncode == 0
        monkeypatch.setenv("VMFLEET_FAULT_SNAPSHOT_DELAY", "60")
        hung = vmfleet("snapshot", "create", str(path), "shang", "stuck", "--timeout", "3")
        monkeypatch.delenv("VMFLEET_FAULT_SNAPSHOT_DELAY")
        assert hung.returncode == 1
        assert "vm shang: snapshot 'stuck' did not finish within 3 s" in " ".join(
            hung.stderr.split()
        )
        assert _domstate("shang") == "running"  # paused for the snapshot, resumed
        assert _json("snapshot", "list", str(path)) == []
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []
