"""Standby VMs (`power: off` on a VM or template, as seed 001's standby VMs): `up` defines them
but does not start them, a second `up` leaves them off, and `start` takes a template name."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.testhost import TestDriverHost, fleet_file

from vmfleet import Fleet, SpecError


def _states(fleet: Fleet) -> dict[str, str]:
    return {vm.name: vm.state for vm in fleet.list()}


def test_up_defines_standby_vms_without_starting_them(tmp_path: Path) -> None:
    path = fleet_file(tmp_path, "  web: {}\n  spare: {replicas: 2, power: off}", prefix="standby")
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
    with Fleet.open(
        fleet_file(tmp_path, '  a: {power: "off"}\n  b: {power: on}', prefix="standby")
    ) as fleet:
        assert [vm.name for vm in fleet.show()] == ["a", "b"]
    with pytest.raises(SpecError, match="not a power setting"):
        Fleet.open(fleet_file(tmp_path, "  a: {power: standby}", prefix="standby"))
