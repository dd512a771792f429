"""The Python API on a real libvirtd: `Fleet` brings micro guests up (one replica named as a
target first, then the rest), lists them running with their forwarded SSH, waits for SSH
readiness, and removes them with nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e_support import leftovers, micro_fleet_yaml, unique_fleet

from vmfleet import Event, Fleet, Stage

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("micro")]


def test_fleet_up_list_and_down_on_micro_guests(tmp_path: Path) -> None:
    name = unique_fleet("e2eapi")
    t = name.replace("-", "")  # domain names are per host: other tests' fleets run beside
    path = tmp_path / "fleet.yaml"
    path.write_text(micro_fleet_yaml(name, replicas=2, ready="port:22", template=t))
    events: list[Event] = []
    try:
        with Fleet.open(path, on_event=events.append) as fleet:
            first = fleet.up([f"{t}@1"])
            first.raise_for_failures()
            assert [(o.vm, o.action) for o in first.outcomes] == [(f"{t}-1", "create")]
            assert [(v.name, v.state) for v in fleet.list()] == [
                (f"{t}-0", "absent"),
                (f"{t}-1", "running"),
            ]
            rest = fleet.up()
            rest.raise_for_failures()
            # untargeted: every running VM is answered for, the one already up as unchanged
            assert [(o.vm, o.action) for o in rest.outcomes] == [
                (f"{t}-0", "create"),
                (f"{t}-1", "unchanged"),
            ]
            assert all(o.ready_seconds is not None for o in (*first.outcomes, *rest.outcomes))
            listed = fleet.list()
            assert [(v.name, v.state) for v in listed] == [
                (f"{t}-0", "running"),
                (f"{t}-1", "running"),
            ]
            assert all(v.ip and v.ip[0].startswith("127.0.0.1:") for v in listed)
            assert fleet.up().up_to_date
            removed = fleet.down()
            removed.raise_for_failures()
            assert sorted(o.vm for o in removed.outcomes) == [f"{t}-0", f"{t}-1"]
        assert Stage(f"up {name}", (f"{t}-1",)) in events
    finally:
        with Fleet.open(path) as fleet:
            fleet.down()
    assert leftovers(name) == []
