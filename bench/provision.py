"""Provisioning benchmarks (issue 11: fast at every size).

1. `vmfleet up` of N micro guests, until every domain runs, next to the floor script, and
   `vmfleet down` of them next to the floor's; N from `BENCH_SIZES` (default 5,10,20), each
   side's up and down alone on the host, who goes first alternating (`alternate`), wall and
   CPU seconds (the process and its children).
2. `vmfleet up` with SSH readiness of Debian guests: how long after the last guest first
   answers on SSH the command returns (watched independently, from outside vmfleet).
"""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

from tests.e2e_support import micro_fleet_yaml
from tests.support import images

from vmfleet.drivers import names
from vmfleet.drivers.guest import ssh_banner
from vmfleet.drivers.qemuimg import sha256

PY = sys.executable


def sizes(default: str = "5,10,20") -> list[int]:
    """The fleet sizes to measure: `BENCH_SIZES` (e.g. `5` while developing)."""
    return [int(n) for n in os.environ.get("BENCH_SIZES", default).split(",") if n]


def timed(argv: list[str], **kwargs: object) -> tuple[float, float]:
    """Run a command to its end: (wall seconds, CPU seconds of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, check=False, **kwargs)  # type: ignore[call-overload]
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace")[-3000:] if done.stderr else ""
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}\n{tail}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def cli(*args: str, inside: Sequence[str] = ()) -> tuple[float, float]:
    """Run the vmfleet CLI, timed (see `timed`); `inside`: a command prefix that runs it
    elsewhere, such as `ip netns exec NAME`."""
    return timed(
        [*inside, PY, "-m", "vmfleet.cli.main", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _floor(*args: str) -> tuple[float, float]:
    return timed([PY, "-m", "bench.floor", *args])


def _micro_fleet(directory: Path, fleet: str, count: int) -> Path:
    path = directory / "fleet.yaml"
    path.write_text(micro_fleet_yaml(fleet, replicas=count))
    return path


def _row(
    measure: str, ours: tuple[float, float], floor: tuple[float, float], target: str
) -> dict[str, object]:
    return {
        "measure": measure,
        "vmfleet_s": ours[0],
        "floor_s": floor[0],
        "ratio": ours[0] / floor[0],
        "vmfleet_cpu_s": ours[1],
        "floor_cpu_s": floor[1],
        "target": target,
    }


Timing = tuple[float, float]
Side = tuple[Callable[[], Timing], Callable[[], Timing]]


def alternate(
    sides: Mapping[str, Side], rounds: int | None = None
) -> dict[str, tuple[Timing, Timing]]:
    """Each side's (up, down) pair run alone on the host, the order of the sides turning from
    round to round; per side the best up and the best down (wall, with that run's CPU) of
    `rounds` (default `BENCH_ROUNDS` or 3).

    Alone: no other side's guests are booting meanwhile (guests booting under TCG slow every
    destroy and start beside them)."""
    rounds = rounds or int(os.environ.get("BENCH_ROUNDS", "3"))
    ups: dict[str, list[Timing]] = {name: [] for name in sides}
    downs: dict[str, list[Timing]] = {name: [] for name in sides}
    order = list(sides)
    for turn in range(rounds):
        for name in order if turn % 2 == 0 else order[::-1]:
            up, down = sides[name]
            ups[name].append(up())
            downs[name].append(down())
    return {name: (min(ups[name]), min(downs[name])) for name in sides}


def up_down(rounds: int | None = None) -> list[dict[str, object]]:
    """vmfleet and the floor, alternating (see `alternate`), for up and down of each size;
    best of `rounds` (default `BENCH_ROUNDS` or 3)."""
    rows: list[dict[str, object]] = []
    base = names.base_volume(image="micro", digest=sha256(images.micro_disk()))
    args = (base, str(images.micro_kernel()), str(images.micro_initrd()))
    for count in sizes():
        with tempfile.TemporaryDirectory() as tmp:
            fleet = f"bench-{uuid.uuid4().hex[:6]}"
            path = str(_micro_fleet(Path(tmp), fleet, count))
            # Warm-up: uploads the base image once (both sides then clone from it).
            cli("up", path, "-j", "8")
            cli("down", path, "--yes")
            prefix = f"floor-{uuid.uuid4().hex[:6]}"
            best = alternate(
                {
                    "ours": (
                        partial(cli, "up", path, "-j", "8"),
                        partial(cli, "down", path, "--yes", "-j", "8"),
                    ),
                    "floor": (
                        partial(_floor, "up", prefix, str(count), *args),
                        partial(_floor, "down", prefix, str(count)),
                    ),
                },
                rounds,
            )
        (up, down), (floor_up, floor_down) = best["ours"], best["floor"]
        rows.append(_row(f"up {count} micro VMs, all running", up, floor_up, "<= 1.1x"))
        rows.append(_row(f"down {count} micro VMs", down, floor_down, "<= 1.2x"))
    return rows


def ssh_ready(count: int | None = None) -> list[dict[str, object]]:
    """Seconds from the last guest's first SSH banner to `vmfleet up` returning
    (`count` Debian guests, default `BENCH_SSH_VMS` or 5)."""
    count = count or int(os.environ.get("BENCH_SSH_VMS", "5"))
    with tempfile.TemporaryDirectory() as tmp:
        fleet = f"benchssh-{uuid.uuid4().hex[:6]}"
        path = Path(tmp) / "fleet.yaml"
        path.write_text(f"""
fleet: {fleet}
hosts: {{local: {{domain_type: qemu}}}}
images: {{debian: {{source: {images.debian_image()}}}}}
defaults: {{image: debian, memory: 512MiB, disk: 3GiB, ready: {{wait_for: ssh, timeout: 10m}}}}
vms:
  d: {{replicas: {count}}}
""")
        db = Path(tmp) / ".vmfleet" / "state.db"
        first_answer: dict[int, float] = {}
        stop = threading.Event()

        def watch_port(port: int) -> None:
            # Independent of vmfleet: poll this guest's forward until it first shows a banner.
            while not stop.is_set() and port not in first_answer:
                if ssh_banner("127.0.0.1", port, timeout=2.0):
                    first_answer[port] = time.perf_counter()
                time.sleep(0.05)

        def watch() -> None:
            started: set[int] = set()
            while not stop.is_set():
                for port in set(_ports(db)) - started:
                    started.add(port)
                    threading.Thread(target=watch_port, args=(port,), daemon=True).start()
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [PY, "-m", "vmfleet.cli.main", "up", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            returned = time.perf_counter()
        finally:
            stop.set()
            watcher.join()
            cli("down", str(path), "--yes")
    if done.returncode != 0:
        return [{"measure": f"up {count} Debian guests failed", "error": done.stderr[-2000:]}]
    last = max(first_answer.values()) if len(first_answer) == count else float("nan")
    return [
        {
            "measure": f"up {count} Debian guests, ssh readiness",
            "total_s": returned - start,
            "last_ssh_s": last - start,
            "return_after_last_ssh_s": returned - last,
            "target": "<= 1s",
        }
    ]


def _ports(db: Path) -> list[int]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=0.1) as conn:
            rows = conn.execute("SELECT value FROM leases WHERE kind = 'port' AND slot = 0")
            return [int(r[0]) for r in rows]
    except sqlite3.Error:
        return []
