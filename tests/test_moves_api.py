"""Moves through the `Fleet` API on libvirt's test driver (which cannot migrate): a drain
cordons its host in the state store, `hosts` shows it, placement avoids it and `uncordon`
lifts it; a rebalance proposal changes nothing; the move commands refuse what cannot be."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.testhost import TestDriverHost, fleet_file

from vmfleet import Fleet, UsageError
from vmfleet.state.store import Store


def test_drain_cordons_the_host_until_uncordon_and_placement_avoids_it(tmp_path: Path) -> None:
    path = fleet_file(tmp_path, "  web: {replicas: 2}", prefix="mov", hosts=("h1", "h2"))
    with Fleet.open(path, hosts=TestDriverHost.factory) as fleet:
        result = fleet.drain("h1")  # nothing of this fleet runs yet: no moves
        assert result.plan.moves == () and result.applied
        rows = {r["host"]: r for r in fleet.hosts(probe=False)}
        assert rows["h1"]["status"] == "cordoned" and rows["h1"]["schedulable"] is False
        assert rows["h2"]["status"] == "ready"
        assert {a.host for a in fleet.plan().actions} == {"h2"}
        assert fleet.uncordon("h1") is True
        assert fleet.uncordon("h1") is False
        rows = {r["host"]: r for r in fleet.hosts(probe=False)}
        assert rows["h1"]["status"] == "ready"
        # how long the drain took, for serve's histograms (a proposal is not an operation)
        fleet.rebalance(max_moves=1)
        took = [r[2] for r in Store(fleet.state_dir, readonly=True).duration_rows()]
        assert took == ["drain"]


def test_rebalance_proposal_and_bad_requests(tmp_path: Path) -> None:
    path = fleet_file(tmp_path, "  db: {}", prefix="mov", hosts=("h1", "h2"))
    with Fleet.open(path, hosts=TestDriverHost.factory) as fleet:
        proposed = fleet.rebalance(max_moves=3)
        assert not proposed.applied and proposed.done == ()
        assert set(proposed.plan.before) == {"h1", "h2"}
        with pytest.raises(UsageError, match="no host nope"):
            fleet.drain("nope")
        with pytest.raises(UsageError, match="unknown VM ghost"):
            fleet.migrate("ghost")
        with pytest.raises(UsageError, match="runs on no reachable host"):
            fleet.migrate("db")  # defined in the spec, never created
        with pytest.raises(UsageError, match="h1 answers"):
            fleet.evacuate("h1")
