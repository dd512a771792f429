"""The unplaceable-VM message: one block per set of reasons, an unreachable host said once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.e2e_support import vmfleet

from vmfleet.core.unplaced import UNREACHABLE_HINT, report


def test_vms_failing_alike_share_one_block() -> None:
    failures = {f"web-{n}": ("h1: needs 4 vCPUs, 2 free",) for n in range(976)}
    failures["db"] = ("h1: no label disk=ssd",)
    text = report(failures, {})
    assert text.startswith("nothing was changed: 977 VMs cannot be placed:\n")
    assert text.count("needs 4 vCPUs") == 1
    assert "  web-0, web-1, web-2, web-3, web-4, … web-975 (976 VMs):\n" in text
    assert "  db:\n    - h1: no label disk=ssd" in text


def test_an_unreachable_host_is_explained_once_with_a_hint() -> None:
    why = "host far: cannot connect to qemu+ssh://far/system: Connection refused"
    failures = dict.fromkeys(
        ("a", "b"), ("far: unreachable: " + why, "near: needs 8 GiB, 1 GiB free")
    )
    text = report(failures, {"far": why})
    assert text.count("Connection refused") == 1
    assert "  host far is unreachable: cannot connect to qemu+ssh://far/system" in text
    assert text.count(UNREACHABLE_HINT) == 1
    assert "  a, b:\n    - far: unreachable (above)\n    - near: needs 8 GiB, 1 GiB free" in text


def test_a_single_vm_reads_as_before() -> None:
    assert report({"db": ("h1: full",)}, {}) == (
        "nothing was changed: 1 VM cannot be placed:\n  db:\n    - h1: full"
    )


def test_plan_with_an_unreachable_host_says_it_once(fleet_file: Callable[[str], Path]) -> None:
    path = fleet_file(
        """
hosts: {gone: {uri: "qemu+unix:///system?socket=/nonexistent/libvirt-sock"}}
vms: {web: {replicas: 4}}
"""
    )
    result = vmfleet("plan", str(path))
    assert result.returncode == 1
    assert result.stderr.count("/nonexistent/libvirt-sock'") == 1
    assert "web-0, web-1, web-2, web-3:" in result.stderr
    assert "hint: is libvirtd" in result.stderr
