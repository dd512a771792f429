"""Standby VMs (`power: off` on a VM or template, as seed 001's standby VMs): `up` defines them
but does not start them, a second `up` leaves them off, and `start` takes a template name."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.e2e_support import unique_fleet
from tests.support.testhost import TestDriverHost

from vmfleet import Fleet, SpecError


def _fleet(tmp_path: Path, vms: str) -> Path:
    image = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"fleet: {unique_fleet('standby')}\n"
        'hosts: {local: {uri: "test:///default", domain_type: qemu, pool: default-pool}}\n'
        f"images: {{base: {{source: {image}}}}}\n"
        "defaults: {image: base, memory: 64MiB, disk: 16MiB}\n"
        f"vms:\n{vms}\n"
    )
    return path


def _states(fleet: Fleet) -> dict[str, str]:
    return {vm.name: vm.state for vm in fleet.list()}


def test_up_defines_standby_vms_without_starting_them(tmp_path: Path) -> None:
    path = _fleet(tmp_path, "  web: {}\n  spare: {replicas: 2, power: off}")
    with Fleet.open(path, hosts=TestDriverHost.factory) as fleet:
        fleet.up().raise_for_failures()
        assert _states(fleet) == {"web": "running", "spare-0": "shutoff", "spare-1": "shutoff"}
        again = fleet.up()
        again.raise_for_failures()
        assert _states(fleet)["spare-0"] == "shutoff"
        fleet.start(["spare"]).raise_for_failures()
        assert _states(fleet) == {"web": "running", "spare-0": "running", "spare-1": "running"}
        fleet.down(()).raise_for_failures()


def test_power_takes_on_off_and_yaml_booleans_only(tmp_path: Path) -> None:
    with Fleet.open(_fleet(tmp_path, '  a: {power: "off"}\n  b: {power: on}')) as fleet:
        assert [vm.name for vm in fleet.show()] == ["a", "b"]
    with pytest.raises(SpecError, match="not a power setting"):
        Fleet.open(_fleet(tmp_path, "  a: {power: standby}"))
