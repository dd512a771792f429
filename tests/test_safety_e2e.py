"""Data safety on a real libvirtd with micro guests: one fleet's `down` never touches another
fleet's disks whatever their names hold, a VM whose name holds `--` leaks nothing, and an
image whose header names a host file is refused before anything changes."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from tests.e2e_support import leftovers, micro_fleet_yaml, vmfleet
from tests.support import images

from vmfleet.drivers import names
from vmfleet.engine import hostlocks
from vmfleet.engine.context import FleetContext
from vmfleet.spec.load import load
from vmfleet.state.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("micro")]

POOL = Path("/var/lib/libvirt/images")


def _fleet(directory: Path, fleet: str, vm: str) -> Path:
    directory.mkdir()
    path = directory / "fleet.yaml"
    head = micro_fleet_yaml(fleet, replicas=1).split("vms:")[0]
    path.write_text(f"{head}vms:\n  {vm}: {{data_disks: [{{size: 8MiB}}]}}\n")
    return path


def test_down_of_fleet_relqa_x_keeps_the_disks_of_fleet_relqa_vm_x_y(tmp_path: Path) -> None:
    token = uuid.uuid4().hex[:4]
    first, second = f"rq{token}", f"rq{token}--x"
    vm = f"x--y{token}"
    a = _fleet(tmp_path / "a", first, vm)
    b = _fleet(tmp_path / "b", second, f"z{token}")
    try:
        for path in (a, b):
            result = vmfleet("up", str(path))
            assert result.returncode == 0, result.stderr
        disks = sorted(p.name for p in POOL.glob(f"vmf-{first}.*"))
        assert disks == [f"vmf-{first}.{vm}.{r}" for r in ("data-0", "root", "seed.iso")]
        serial_log = Path(f"/var/log/libvirt/qemu/z{token}-serial.log")
        assert serial_log.exists()
        result = vmfleet("down", str(b), "--yes")
        assert result.returncode == 0, result.stderr
        assert leftovers(second) == []
        assert not serial_log.exists()  # down removes the console log it configured
        assert sorted(p.name for p in POOL.glob(f"vmf-{first}.*")) == disks
        # the `--` VM leaks nothing on down, and a second up works
        assert vmfleet("down", str(a), "--yes").returncode == 0
        assert leftovers(first) == []
        again = vmfleet("up", str(a))
        assert again.returncode == 0, again.stderr
    finally:
        vmfleet("down", str(b), "--yes")
        vmfleet("down", str(a), "--yes")
    assert leftovers(first) == [] and leftovers(second) == []


def test_an_image_with_a_host_backing_file_is_refused_on_real_libvirt(tmp_path: Path) -> None:
    evil = tmp_path / "evil.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", str(evil)],
        check=True,
    )
    fleet = f"evil{uuid.uuid4().hex[:4]}"
    path = _fleet(tmp_path / "f", fleet, f"e{fleet}")
    text = path.read_text().replace(str(images.micro_disk()), str(evil))
    path.write_text(text)
    before = os.stat("/etc/hostname")
    result = vmfleet("up", str(path))
    assert result.returncode == 2, result.stderr
    assert "backing file (/etc/hostname)" in " ".join(result.stderr.split())
    assert leftovers(fleet) == []
    after = os.stat("/etc/hostname")
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )


def test_kill_9_while_building_seeds_leaves_no_key_material_behind(tmp_path: Path) -> None:
    fleet = f"kill{uuid.uuid4().hex[:4]}"
    path = tmp_path / "fleet.yaml"
    path.write_text(micro_fleet_yaml(fleet, replicas=3, template=f"k{fleet}"))
    systmp = tmp_path / "systmp"  # the system temp dir of every run: nothing may land there
    systmp.mkdir()
    env = {**os.environ, "TMPDIR": str(systmp), "COLUMNS": "200"}
    rng = random.Random(17)
    try:
        for _ in range(4):
            run = subprocess.Popen(
                [sys.executable, "-m", "vmfleet.cli.main", "up", str(path)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(1.5, 6.0))
            run.kill()
            run.wait()
        result = vmfleet("up", str(path))
        assert result.returncode == 0, result.stderr
        secrets = [
            p
            for where in (systmp, tmp_path / ".vmfleet" / "tmp")
            if where.exists()
            for p in where.rglob("*")
            if p.is_file() and b"PRIVATE KEY" in p.read_bytes()
        ]
        assert secrets == []
        assert list((tmp_path / ".vmfleet" / "tmp").iterdir()) == []
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []


def test_up_after_a_kill_waits_until_the_vms_it_did_not_start_are_ready(tmp_path: Path) -> None:
    fleet = f"rdy{uuid.uuid4().hex[:4]}"
    template = f"r{fleet}"
    path = tmp_path / "fleet.yaml"
    text = micro_fleet_yaml(fleet, replicas=2, ready="port:22", template=template)
    path.write_text(text.replace("timeout: 90s", "timeout: 600s"))  # TCG on a busy machine
    vms = [f"{template}-0", f"{template}-1"]
    db = tmp_path / ".vmfleet" / "state.db"
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "vmfleet.cli.main", "up", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and run.poll() is None and _vms_created(db) < 2:
            time.sleep(0.02)
        assert run.poll() is None, "up finished before it could be killed"
        run.kill()  # both VMs created and started, their readiness not yet awaited
        run.wait()
        result = vmfleet("up", str(path), "-o", "json")
        assert result.returncode == 0, result.stderr
        rows = {r["vm"]: r for r in json.loads(result.stdout)}
        assert sorted(rows) == vms
        assert all(r["action"] == "unchanged" for r in rows.values())
        assert all(r["ok"] and r["ready_seconds"] is not None for r in rows.values())
        listed = json.loads(vmfleet("list", str(path), "-o", "json").stdout)
        for row in listed:
            port = int(row["ip"][-1].split(":")[1])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                assert sock.recv(64).startswith(b"SSH-")
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []


def _vms_created(db: Path) -> int:
    """How many VMs a run has created and started (their `vm` journal entries closed)."""
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        try:
            row = conn.execute(
                "SELECT count(*) FROM journal WHERE kind = 'vm' AND status = 'done'"
            ).fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(row[0])


def test_a_lost_state_dir_keeps_ports_and_host_keys(tmp_path: Path) -> None:
    fleet = f"lost{uuid.uuid4().hex[:4]}"
    vm = f"l{fleet}"
    path = tmp_path / "fleet.yaml"
    path.write_text(micro_fleet_yaml(fleet, replicas=1, template=vm))
    try:
        assert vmfleet("up", str(path)).returncode == 0
        before = _access(path, vm)
        known = (tmp_path / ".vmfleet" / "known_hosts").read_text()
        shutil.rmtree(tmp_path / ".vmfleet")
        assert _access(path, vm) == before  # read back from the domain, not leased anew
        assert not (tmp_path / ".vmfleet").exists()  # read-only commands write nothing
        # a command that writes (here ssh; a micro guest then refuses the login) rebuilds
        # known_hosts from the host keys kept in the domain's metadata
        vmfleet("ssh", str(path), vm, "--", "true")
        assert (tmp_path / ".vmfleet" / "known_hosts").read_text() == known
        # the generated login key is not in libvirt: said, and not silently made anew
        config = vmfleet("ssh-config", str(path))
        assert "login key" in config.stderr and "is missing" in config.stderr
        assert not (tmp_path / ".vmfleet" / "id_ed25519").exists()
        again = vmfleet("up", str(path))
        assert again.returncode == 0, again.stderr
        assert "accept only the old key" in " ".join(again.stderr.split())
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []


def _access(path: Path, vm: str) -> tuple[str, str, str]:
    """The VM's forward port as `list`, `ips` and `ssh-config` show it."""
    listed = json.loads(vmfleet("list", str(path), "-o", "json").stdout)
    (row,) = [r for r in listed if r["name"] == vm]
    ips = vmfleet("ips", str(path)).stdout
    port_line = next(line for line in ips.splitlines() if "SSH_PORT" in line)
    config = vmfleet("ssh-config", str(path)).stdout
    config_port = next(line.split()[1] for line in config.splitlines() if "Port " in line)
    return row["ip"][-1], port_line.split("=", 1)[1], config_port


def test_two_checkouts_of_one_fleet_do_not_interleave(tmp_path: Path) -> None:
    fleet = f"lock{uuid.uuid4().hex[:4]}"
    text = micro_fleet_yaml(fleet, replicas=1, template=f"x{fleet}")
    first, second = tmp_path / "a" / "fleet.yaml", tmp_path / "b" / "fleet.yaml"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text(text)
    ctx = FleetContext(loaded=load(first), store=Store(tmp_path / "sa"), state_dir=tmp_path / "sa")
    lock = names.lock(fleet=fleet)
    host = ctx.host("local")
    try:
        with hostlocks.hold(ctx, what="up elsewhere"):
            assert host.get_volume("default", lock) is not None
            busy = vmfleet("up", str(second))
            waited = vmfleet("down", str(second), "--yes", "--wait", "1")
        assert busy.returncode == 1
        flat = " ".join(busy.stderr.split())
        assert "the fleet is busy on host local: up elsewhere" in flat
        assert waited.returncode == 1 and "busy" in waited.stderr
        assert host.get_volume("default", lock) is None  # released
        assert leftovers(fleet) == []

        # a lock left by a dead process on this machine is broken, with a message
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale = {"token": "t", "what": "up", "pid": dead.pid, "hostname": socket.gethostname()}
        assert host.create_marker("default", lock, json.dumps(stale).encode())
        result = vmfleet("down", str(second), "--yes")
        assert result.returncode == 0, result.stderr
        assert "breaking the lock" in result.stderr and "no longer running" in result.stderr
        assert host.get_volume("default", lock) is None
    finally:
        host.delete_volume("default", lock)
        ctx.close()
