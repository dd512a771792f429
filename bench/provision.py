"""Provisioning benchmarks (issue: provision on real libvirt).

1. `vmfleet up` of N micro guests, until every domain runs, next to the floor script.
2. `vmfleet up` with SSH readiness of Debian guests: how long after the last guest first
   answers on SSH the command returns (watched independently, from outside vmfleet).
3. `vmfleet down` of N micro guests, next to the floor script.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from tests.e2e_support import micro_fleet_yaml
from tests.support import images

from vmfleet.drivers.guest import ssh_banner
from vmfleet.drivers.metadata import base_volume_name
from vmfleet.drivers.qemuimg import sha256

PY = sys.executable


def _cli(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [PY, "-m", "vmfleet.cli.main", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def _floor(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([PY, "-m", "bench.floor", *args], check=True)
    return time.perf_counter() - start


def _micro_fleet(directory: Path, fleet: str, count: int) -> Path:
    path = directory / "fleet.yaml"
    path.write_text(micro_fleet_yaml(fleet, replicas=count))
    return path


def up_down(count: int = 20, rounds: int = 3) -> list[dict[str, object]]:
    """Best-of-`rounds` wall times of vmfleet and the floor for up and down of `count` VMs."""
    with tempfile.TemporaryDirectory() as tmp:
        fleet = f"bench-{uuid.uuid4().hex[:6]}"
        path = _micro_fleet(Path(tmp), fleet, count)
        # Warm-up: uploads the base image once (both sides then clone from it).
        _cli("up", str(path), "-j", "8")
        _cli("down", str(path), "--yes")
        base = base_volume_name(image="micro", digest=sha256(images.micro_disk()))
        args = (base, str(images.micro_kernel()), str(images.micro_initrd()))
        ups, downs, floor_ups, floor_downs = [], [], [], []
        for _ in range(rounds):
            ups.append(_cli("up", str(path), "-j", "8"))
            downs.append(_cli("down", str(path), "--yes", "-j", "8"))
            prefix = f"floor-{uuid.uuid4().hex[:6]}"
            floor_ups.append(_floor("up", prefix, str(count), *args))
            floor_downs.append(_floor("down", prefix, str(count)))
    return [
        {
            "measure": f"up {count} micro VMs",
            "vmfleet_s": min(ups),
            "floor_s": min(floor_ups),
            "ratio": min(ups) / min(floor_ups),
            "target": "<= 1.1x",
        },
        {
            "measure": f"down {count} VMs",
            "vmfleet_s": min(downs),
            "floor_s": min(floor_downs),
            "ratio": min(downs) / min(floor_downs),
            "target": "<= 1.2x",
        },
    ]


def ssh_ready(count: int = 5) -> list[dict[str, object]]:
    """Seconds from the last guest's first SSH banner to `vmfleet up` returning."""
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
        subprocess.run(
            [PY, "-m", "vmfleet.cli.main", "up", str(path)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        returned = time.perf_counter()
        stop.set()
        watcher.join()
        _cli("down", str(path), "--yes")
    last = max(first_answer.values()) if len(first_answer) == count else float("nan")
    return [
        {
            "measure": f"up {count} Debian guests, ssh readiness",
            "total_s": returned - start,
            "last_ssh_s": last - start,
            "return_after_last_ssh_s": returned - last,
            "target": "<= 2s",
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
