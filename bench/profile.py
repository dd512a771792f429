"""Where the time of one `vmfleet up` and one `vmfleet down` of N micro guests goes
(cProfile, N = the largest of `BENCH_SIZES`): the functions with the most cumulative time,
and what the main thread waited on. Profiles are kept in .cache/bench/ for a closer look."""

from __future__ import annotations

import pstats
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from tests.e2e_support import micro_fleet_yaml

from bench.provision import sizes, timed

PY = sys.executable
OUT = Path(".cache/bench")
# Our own functions and the libvirt calls: the rows that say where an up or down goes.
SHOWN = ("vmfleet/", "libvirt.py", "importlib._bootstrap>:1165", "threading.py")


def up_down() -> list[dict[str, object]]:
    count = max(sizes())
    OUT.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.yaml"
        path.write_text(micro_fleet_yaml(f"prof-{uuid.uuid4().hex[:6]}", replicas=count))
        for verb, extra in (("up", ()), ("down", ("--yes",))):
            prof = OUT / f"{verb}-{count}.prof"
            wall, _cpu = timed(
                [
                    PY,
                    "-m",
                    "cProfile",
                    "-o",
                    str(prof),
                    "-m",
                    "vmfleet.cli.main",
                    verb,
                    str(path),
                    *extra,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            rows += _top(prof, f"{verb} {count}", wall)
    return rows


def _top(prof: Path, what: str, wall: float, limit: int = 14) -> list[dict[str, object]]:
    stats = pstats.Stats(str(prof))
    entries = []
    for (file, line, func), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{file}:{line}({func})"
        if any(mark in where for mark in SHOWN):
            entries.append((cumulative, where.split("site-packages/")[-1].split("src/")[-1]))
    entries.sort(reverse=True)
    return [
        {"run": what, "wall_s": wall, "function": where, "cumulative_s": cumulative}
        for cumulative, where in entries[:limit]
    ]
