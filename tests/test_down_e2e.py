"""`down` on real libvirt: every running VM is stopped at once before the removal jobs run,
so removing N VMs costs about one stop, not N/-j of them; `--graceful` asks guests first."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e_support import leftovers, micro_fleet_yaml, unique_fleet, vmfleet

from vmfleet import engine
from vmfleet.engine.context import FleetContext
from vmfleet.spec.load import load
from vmfleet.state.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("micro")]


def _context(path: Path) -> FleetContext:
    state = path.parent / ".vmfleet"
    return FleetContext(loaded=load(path), store=Store(state), state_dir=state)


@pytest.mark.parametrize("graceful", [None, 30.0], ids=["pulled", "graceful"])
def test_down_stops_every_vm_before_any_removal_job_even_with_one_worker(
    tmp_path: Path, graceful: float | None
) -> None:
    fleet = unique_fleet("e2ed")
    path = tmp_path / "fleet.yaml"
    path.write_text(micro_fleet_yaml(fleet, replicas=3, ready="running"))
    try:
        assert vmfleet("up", str(path)).returncode == 0
        phases: list[tuple[str, str]] = []
        ctx = _context(path)
        try:
            results = engine.down(
                ctx,
                progress=lambda vm, phase, _d: phases.append((vm, phase)),
                workers=1,
                graceful=graceful,
            )
        finally:
            ctx.close()
        assert all(r.ok for r in results)
        # all three stopped first (in any order), then the one worker's removals
        assert sorted(phases[:3]) == [(f"m-{i}", "stop") for i in range(3)], phases
        assert [phase for _vm, phase in phases[3:]].count("undefine") == 3
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []
