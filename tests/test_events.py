"""The event log: retention by count and age (keeping each group's last power record), the
`vmfleet events` command (filters, JSON, --follow), and libvirt lifecycle events picked up
through libvirt's event API while serve runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest
from tests.e2e_support import vmfleet
from tests.support.testfleet import running_fleet

from vmfleet.serve.service import Service
from vmfleet.state import events
from vmfleet.state.store import Store


def test_retention_drops_old_and_surplus_events_but_keeps_group_records(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.event(kind="group-power", vm="group/app", message='{"state": "PoweredOn"}')
    for i in range(10):
        store.event(kind="power", vm="web", message=f"step {i}")
    assert events.prune(store, keep=3) == 7  # of 11 events the newest 3 stay, and the record
    kept = events.query(store, fleet="f")
    assert [e.message for e in kept] == [
        "power state PoweredOn",
        "step 7",
        "step 8",
        "step 9",
    ]
    assert events.prune(store, keep=100, max_age=-1) == 3  # all older than "now"
    assert [e.reason for e in events.query(store, fleet="f")] == ["group-power"]


def test_the_store_prunes_as_it_writes(tmp_path: Path, monkeypatch: object) -> None:
    from vmfleet.state import store as store_module

    store = Store(tmp_path)
    store.event(kind="power", vm="old", message="long ago")
    with store._tx() as db:  # age the first event past the retention
        db.execute("UPDATE events SET at = at - ?", (store_module.EVENTS_MAX_AGE + 1,))
    for _ in range(store_module.PRUNE_EVERY):
        store.event(kind="power", vm="new", message="now")
    assert "old" not in {e.subject for e in events.query(store, fleet="f")}


FLEET = """
fleet: ev
images: {d: {source: /x}}
groups: {app: {members: [web]}}
vms: {web: {image: d, replicas: 2}, db: {image: d}}
"""


def test_events_command_filters_by_group_and_prints_json(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET)
    store = Store(tmp_path / ".vmfleet")
    store.event(kind="created", vm="web-0", message="created on local")
    store.event(kind="created", vm="db", message="created on local")
    store.event(
        kind="group-power", vm="group/app", message='{"state": "PoweredOff", "status": "done"}'
    )
    result = vmfleet("events", str(path), "app", "--since", "1h", "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["object"], r["reason"], r["fleet"]) for r in rows] == [
        ("web-0", "created", "ev"),
        ("group/app", "group-power", "ev"),
    ]
    assert rows[1]["message"] == "power state PoweredOff done"
    table = vmfleet("events", str(path), "db")
    assert "created on local" in table.stdout and "web-0" not in table.stdout
    bad = vmfleet("events", str(path), "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr


def test_events_follow_prints_new_events_as_they_come(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET)
    store = Store(tmp_path / ".vmfleet")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmfleet.cli.main", "events", str(path), "--follow", "-o", "json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        store.event(kind="domain-crashed", vm="db", message="libvirt: db crashed")
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert json.loads(line)["reason"] == "domain-crashed"
    finally:
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=10)


def test_lifecycle_events_behind_our_back_are_recorded(tmp_path: Path) -> None:
    with running_fleet(tmp_path) as fleet:
        ctx = fleet.context()
        svc = Service(fleet)
        svc.start(interval=60)
        try:
            db = ctx.instances()[2].name
            other = libvirt.open("test:///default")  # someone else, not vmfleet
            other.lookupByName(db).destroy()
            other.lookupByName(db).create()
            deadline = time.monotonic() + 5
            seen: list[str] = []
            while time.monotonic() < deadline and len(seen) < 2:
                seen = [e.reason for e in events.query(ctx.store, fleet=ctx.fleet, objects=[db])]
                time.sleep(0.05)
            assert seen == ["domain-stopped", "domain-started"]
            message = events.query(ctx.store, fleet=ctx.fleet, objects=[db])[0].message
            assert "destroyed" in message and "local" in message
        finally:
            svc.stop()


@pytest.mark.parametrize(
    ("transitions", "expected"),
    [
        pytest.param(
            [(1.0, "a", "started (g tier 0)"), (4.5, "a", "ready (ssh)")],
            {"a": 3.5},
            id="start-then-ready",
        ),
        pytest.param([(1.0, "a", "ready (ssh)")], {}, id="ready-without-start"),
        pytest.param(
            [(1.0, "a", "started"), (2.0, "a", "stopped (forced)")], {}, id="started-never-ready"
        ),
        pytest.param(
            [
                (1.0, "a", "started"),
                (2.0, "a", "ready (running)"),
                (10.0, "a", "started"),
                (16.0, "a", "ready (ssh)"),
                (1.0, "b", "started"),
                (1.5, "b", "ready (port:22)"),
            ],
            {"a": 6.0, "b": 0.5},
            id="the-last-power-on-counts",
        ),
    ],
)
def test_readiness_latency_is_start_to_ready_of_the_last_power_on(
    transitions: list[tuple[float, str, str]], expected: dict[str, float]
) -> None:
    assert events.latencies(transitions) == expected
