"""`down` tries a failed removal once more after the others: libvirt can refuse a domain for a
moment (its last job still ending), and a second `down` should not be needed for that."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.testhost import TestDriverHost, fleet_file

from vmfleet import Fleet
from vmfleet.drivers.libvirt import DomainInfo, LibvirtHost
from vmfleet.errors import HypervisorError

pytestmark = pytest.mark.usefixtures("test_driver_daemon")


class RefusingOnce(TestDriverHost):
    """The host seam: the first look at `b` during a removal fails, as libvirt does while a
    domain's state change lock is held; `refusals` says how often it may still refuse."""

    refusals = 0

    def get_domain(self, name: str) -> DomainInfo | None:
        if name == "b" and RefusingOnce.refusals > 0:
            RefusingOnce.refusals -= 1
            raise HypervisorError("cannot acquire state change lock", host="local", vm=name)
        return super().get_domain(name)

    @classmethod
    def factory(cls, uri: str, name: str) -> LibvirtHost:
        return cls(uri, name=name)


@pytest.mark.parametrize(("refusals", "ok"), [(1, True), (2, False)])
def test_a_removal_refused_once_is_retried_and_one_refused_twice_fails(
    tmp_path: Path, refusals: int, ok: bool
) -> None:
    path = fleet_file(tmp_path, "  a: {}\n  b: {}", prefix="retry")
    with Fleet.open(path, hosts=RefusingOnce.factory) as fleet:
        fleet.up().raise_for_failures()
        RefusingOnce.refusals = refusals
        outcome = {o.vm: o for o in fleet.down(()).outcomes}
        assert outcome["a"].ok and outcome["b"].ok is ok
        if not ok:
            assert "state change lock" in outcome["b"].detail
            RefusingOnce.refusals = 0
            fleet.down(()).raise_for_failures()  # the next down finishes the job
        assert [vm.name for vm in fleet.list() if vm.state != "absent"] == []
