"""Snapshot benchmark (issue: snapshots): a group snapshot of 10 running micro guests,
next to snapshotting the same guests one after another.

Reported per way: the pause window (first freeze/pause to last thaw/resume; for one after
another, the time between the first VM stopping and the last one running again, which is
how far apart the captures are), the longest time one VM stood still, and the total time.
Both ways take internal snapshots with RAM (micro guests have no guest agent: paused).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from tests.e2e_support import micro_fleet_yaml

from vmfleet.engine import snapshots
from vmfleet.engine.context import FleetContext
from vmfleet.spec.load import load
from vmfleet.state.store import Store

PY = sys.executable


def _cli(*args: str) -> None:
    subprocess.run(
        [PY, "-m", "vmfleet.cli.main", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def group_vs_sequential(count: int = 10) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        fleet = f"bench-{uuid.uuid4().hex[:6]}"
        path = Path(tmp) / "fleet.yaml"
        path.write_text(micro_fleet_yaml(fleet, replicas=count, ready="ssh", template="sbench"))
        _cli("up", str(path), "-j", "8")
        ctx = FleetContext(
            loaded=load(path), store=Store(Path(tmp) / ".vmfleet"), state_dir=Path(tmp) / ".vmfleet"
        )
        try:
            everyone = snapshots.members(ctx, all_vms=True)
            group = snapshots.create(ctx, everyone, "group")
            assert group.ok, group.results
            one_by_one = [snapshots.create(ctx, [member], "one") for member in everyone]
            assert all(r.ok for r in one_by_one)
            sequential_total = sum(r.total for r in one_by_one)
            longest = max(r.pause_window or 0.0 for r in one_by_one)
        finally:
            ctx.close()
            _cli("down", str(path), "--yes")
    return [
        {
            "way": f"group of {count} (parallel)",
            "pause window s": group.pause_window or 0.0,
            "longest stop of one VM s": group.pause_window or 0.0,
            "total s": group.total,
        },
        {
            "way": f"{count} one after another",
            "pause window s": sequential_total,
            "longest stop of one VM s": longest,
            "total s": sequential_total,
        },
    ]
