"""Group boot benchmark: a 3-tier group of 2, 3 and 2 micro guests brought to PoweredOn.

Gated: each tier waits until its members answer on SSH, then the next starts.
Fixed delays: the same tiers with a delay each, as long as the slowest tier took to answer
on SSH in the gated run (rounded up, +1 s): the shortest fixed delay that would have covered
these guests this time. Its last tier still waits for SSH, so both end at the same point:
every guest answers.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.e2e_support import micro_fleet_yaml

PY = sys.executable
TIERS = (("gbench-db", 2), ("gbench-app", 3), ("gbench-web", 2))


def _fleet(fleet: str, tiers: str) -> str:
    base = micro_fleet_yaml(fleet, replicas=1, template="gbench-unused").split("vms:")[0]
    vms = "".join(f"  {name}: {{replicas: {n}, group: bench}}\n" for name, n in TIERS)
    return (
        base
        + "vms:\n"
        + vms
        + "groups:\n  bench:\n    power_state: PoweredOff\n    shutdown_timeout: 5s\n"
        + "    boot_order:\n"
        + tiers
    )


def _gated() -> str:
    return "".join(
        f"      - {{members: [{name}], wait_for: 'port:22', timeout: 120s}}\n" for name, _n in TIERS
    )


def _fixed(delay: int) -> str:
    lines = [f"      - {{members: [{name}], delay: {delay}s}}\n" for name, _n in TIERS[:-1]]
    lines.append(f"      - {{members: [{TIERS[-1][0]}], wait_for: 'port:22', timeout: 120s}}\n")
    return "".join(lines)


def _cli(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [PY, "-m", "vmfleet.cli.main", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - start, done.stdout


def boot_order() -> list[dict[str, object]]:
    """Seconds to PoweredOn (every guest answering SSH): readiness gates vs fixed delays."""
    with tempfile.TemporaryDirectory() as tmp:
        fleet = f"benchgrp-{uuid.uuid4().hex[:6]}"
        path = Path(tmp) / "fleet.yaml"
        path.write_text(_fleet(fleet, _gated()))
        try:
            _cli("up", str(path))  # PoweredOff: defines the guests, starts none
            gated_s, out = _cli("power", "on", str(path), "bench", "-o", "json")
            outcomes = json.loads(out)
            slowest = max(o["ready_at"] - o["started_at"] for o in outcomes)
            delay = math.ceil(slowest) + 1
            _cli("power", "off", str(path), "bench")
            path.write_text(_fleet(fleet, _fixed(delay)))
            fixed_s, _out = _cli("power", "on", str(path), "bench")
        finally:
            _cli("down", str(path), "--yes")
    return [
        {
            "measure": "3 tiers (2, 3, 2 micro guests) to PoweredOn",
            "gated_ssh_s": gated_s,
            "fixed_delay_s": fixed_s,
            "delay_per_tier_s": float(delay),
            "ratio": fixed_s / gated_s,
        }
    ]
