"""Plan steps on real libvirt (qemu:///system), with guests that need not boot: a disk grows
on the running VM at once (block resize), a memory growth is defined for the next boot and
stays pending in plan and list until `up --restart`, after which nothing is left to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.e2e_support import leftovers, unique_fleet, vmfleet

pytestmark = pytest.mark.e2e


def write(path: Path, fleet: str, memory: str, disk: str) -> None:
    path.write_text(f"""
fleet: {fleet}
hosts:
  local: {{uri: "qemu:///system", domain_type: qemu, overcommit: {{cpu: 100, memory: 8}}}}
vms:
  blank: {{memory: {memory}, disk: {disk}, ready: {{wait_for: running}}}}
""")


def test_live_staged_and_restarted_changes_converge(tmp_path: Path) -> None:
    fleet = unique_fleet("e2ep")
    path = tmp_path / "fleet.yaml"
    write(path, fleet, "64MiB", "16MiB")
    try:
        created = vmfleet("up", str(path), "--yes")
        assert created.returncode == 0, created.stderr
        write(path, fleet, "96MiB", "32MiB")
        (row,) = json.loads(vmfleet("plan", str(path), "-o", "json").stdout)
        assert [s["step"] for s in row["steps"]] == ["grow-disk", "define"]
        assert row["steps"][0]["live"] and row["pending"] == ["memory"]
        staged = vmfleet("up", str(path), "--yes", "-o", "json")
        assert staged.returncode == 0, staged.stderr
        (row,) = json.loads(vmfleet("plan", str(path), "-o", "json").stdout)
        assert (row["action"], row["steps"], row["pending"]) == ("pending", [], ["memory"])
        (listed,) = json.loads(vmfleet("list", str(path), "-o", "json").stdout)
        assert (listed["memory"], listed["disk"], listed["pending"]) == ("64MiB", "32MiB", True)
        assert "nothing to do" in vmfleet("up", str(path)).stdout
        restarted = vmfleet("up", str(path), "--restart", "--yes")
        assert restarted.returncode == 0, restarted.stderr
        (listed,) = json.loads(vmfleet("list", str(path), "-o", "json").stdout)
        assert (listed["state"], listed["memory"], listed["disk"], listed["pending"]) == (
            "running", "96MiB", "32MiB", False,
        )  # fmt: skip
        assert "nothing to do" in vmfleet("up", str(path)).stdout
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []
