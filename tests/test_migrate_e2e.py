"""Moving VMs between real libvirt daemons (the multihost harness, guests under TCG): a live
migration copies only the VM's own layers and the guest does not reboot; an offline one
boots it there; a `kill -9` mid-migration leaves one running copy, settled by the next
command; a drain of four VMs keeps zone anti-affinity; an evacuated host's stale copy is
removed by `up` once the host is back; a rebalance after adding a host moves one VM of
two; another process's `status` shows a slowed live migration in flight, then the VM's
drift from its pin. Exactly one copy of a VM exists after every step."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from tests.e2e_support import unique_fleet, vmfleet
from tests.support import multihost

from vmfleet.drivers import names as volume_names

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("multihost")]

ZONES = {"mv-a": "a", "mv-b": "b", "mv-c": "c"}
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # "not found" is an answer here


@pytest.fixture(scope="module")
def daemons() -> Iterator[list[multihost.Daemon]]:
    with multihost.daemons(*ZONES) as started:
        yield started


def fleet_yaml(fleet: str, daemons: list[multihost.Daemon], vms: str) -> str:
    return multihost.fleet_yaml(fleet, daemons, vms, zones=ZONES)


def copies(daemons: list[multihost.Daemon], fleet: str, vm: str) -> dict[str, tuple[bool, int]]:
    """Host -> (running, volumes of the VM) wherever anything of the VM exists. A paused
    domain (a migration's incoming side) is not running."""
    out: dict[str, tuple[bool, int]] = {}
    for d in daemons:
        conn = libvirt.open(d.uri)
        try:
            names = list(conn.storagePoolLookupByName("default").listVolumes())
            prefix = f"{volume_names.PREFIX}{fleet}{volume_names.SEP}{vm}{volume_names.SEP}"
            volumes = sum(1 for n in names if n.startswith(prefix))
            try:
                dom = conn.lookupByName(vm)
                running = dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING  # not paused
                exists = True
            except libvirt.libvirtError:
                running, exists = False, False
            if exists or volumes:
                out[d.name] = (running, volumes)
        finally:
            conn.close()
    return out


def wait_ready(daemon: multihost.Daemon, vm: str) -> None:
    """Until the micro guest's init says it is ready on the serial console (booted: its
    banner server runs)."""
    deadline = time.monotonic() + 120
    while "vmfleet-micro: ready" not in daemon.serial_log(vm):
        assert time.monotonic() < deadline, f"{vm} did not boot on {daemon.name}"
        time.sleep(1)


def banner(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return sock.recv(100).decode(errors="replace")


def listed(path: Path) -> dict[str, dict[str, object]]:
    out = vmfleet("list", str(path), "-o", "json")
    assert out.returncode == 0, out.stderr
    return {r["name"]: r for r in json.loads(out.stdout)}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    result = vmfleet(*args)
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def test_live_then_offline_migration_keep_one_copy_and_the_guest_state(
    tmp_path: Path, daemons: list[multihost.Daemon]
) -> None:
    fleet = unique_fleet("mv")
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_yaml(fleet, daemons, "  m: {node_preference: [mv-a]}"))
    a, b = daemons[0], daemons[1]
    try:
        run("up", str(path))
        assert copies(daemons, fleet, "m") == {"mv-a": (True, 2)}  # overlay + seed
        wait_ready(a, "m")

        moved = json.loads(run("migrate", str(path), "m", "--to", "mv-b", "-o", "json").stdout)
        assert moved["mode"].startswith("live") and moved["target"] == "mv-b"
        assert moved["downtime_ms"] is not None and moved["seconds"] > 0
        assert copies(daemons, fleet, "m") == {"mv-b": (True, 2)}
        # The guest did not boot again there: nothing new on the destination's console,
        # and its banner server (started at boot) answers on the forward leased there.
        assert "Linux version" not in b.serial_log("m")
        row = listed(path)["m"]
        assert row["host"] == "mv-b"
        addresses = row["ip"]
        assert isinstance(addresses, list)
        port = int(str(addresses[0]).rsplit(":", 1)[1])
        assert banner(port).startswith("SSH-2.0-vmfleet-micro-m")

        back = json.loads(
            run("migrate", str(path), "m", "--offline", "--timeout", "5", "-o", "json").stdout
        )
        assert back["mode"] == "offline" and back["target"] in ("mv-a", "mv-c")
        assert copies(daemons, fleet, "m") == {back["target"]: (True, 2)}
        there = daemons[0] if back["target"] == "mv-a" else daemons[2]
        deadline = time.monotonic() + 120  # a cold move boots the guest there
        while "vmfleet-micro: ready" not in there.serial_log("m")[-4000:]:
            assert time.monotonic() < deadline
            time.sleep(1)
    finally:
        run("down", str(path), "--yes")
    assert copies(daemons, fleet, "m") == {}


def test_status_shows_a_live_migration_in_flight_then_the_vm_off_its_pin(
    tmp_path: Path, daemons: list[multihost.Daemon]
) -> None:
    fleet = unique_fleet("mf")
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_yaml(fleet, daemons, "  f: {host: mv-a}"))
    try:
        run("up", str(path))
        wait_ready(daemons[0], "f")
        began = time.monotonic()
        mover = subprocess.Popen(  # 3 MiB/s: slow enough to be watched from outside
            [sys.executable, "-m", "vmfleet.cli.main", "migrate", str(path), "f", "--to", "mv-b",
             "--force", "--bandwidth", "3", "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        watched: list[dict[str, Any]] = []
        hosts: dict[str, Any] = {}
        while mover.poll() is None and time.monotonic() < began + 300:
            status = vmfleet("status", str(path), "-o", "json")
            assert status.returncode == 0, status.stderr
            (row,) = [v for v in json.loads(status.stdout)["vms"] if v["name"] == "f"]
            if row["migration"] and row["migration"]["memory_total"]:
                watched.append(row)
                if not hosts:
                    listing = json.loads(run("hosts", str(path), "-o", "json").stdout)
                    hosts = {r["host"]: r["migrations"] for r in listing}
        out, err = mover.communicate(timeout=60)
        assert mover.returncode == 0, err + out
        moved = json.loads(out)
        print(f"live migration at 3 MiB/s: {moved['seconds']:.1f} s, watched {len(watched)}x")
        assert watched, "status never showed the migration with libvirt's job"
        first, last = watched[0], watched[-1]
        assert (first["host"], first["state"]) == ("mv-a", "running")
        move = first["migration"]
        assert (move["source"], move["target"], move["mode"]) == ("mv-a", "mv-b", "live")
        assert move["phase"] == "migrate" and not move["interrupted"]
        assert move["transfer"] in ("disks", "memory") or move["transfer"].startswith("memory")
        assert 0 <= move["memory_remaining"] <= move["memory_total"]
        assert (
            last["migration"]["memory_remaining"] + last["migration"]["disk_remaining"]
            <= move["memory_remaining"] + move["disk_remaining"]
        )
        if hosts:  # asked while the move still ran
            assert hosts["mv-a"]["out"] == ["f"] and hosts["mv-b"]["in"] == ["f"]

        assert copies(daemons, fleet, "f") == {"mv-b": (True, 2)}
        status = json.loads(run("status", str(path), "-o", "json").stdout)
        (row,) = [v for v in status["vms"] if v["name"] == "f"]
        assert (row["host"], row["migration"]) == ("mv-b", None)
        assert row["drift"] == {"vm": "f", "host": "mv-b", "pinned": "mv-a"}
        planned = {r["vm"]: r for r in json.loads(run("plan", str(path), "-o", "json").stdout)}
        assert planned["f"]["drift"] == {"pinned": "mv-a", "host": "mv-b"}
        assert (planned["f"]["action"], planned["f"]["steps"]) == ("unchanged", [])
        assert "not moved" in run("plan", str(path)).stdout
    finally:
        run("down", str(path), "--yes")
    assert copies(daemons, fleet, "f") == {}


def test_kill_9_mid_migration_leaves_one_running_copy_that_the_next_command_settles(
    tmp_path: Path, daemons: list[multihost.Daemon]
) -> None:
    fleet = unique_fleet("mk")
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_yaml(fleet, daemons, "  k: {node_preference: [mv-a]}"))
    try:
        run("up", str(path))
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmfleet.cli.main", "migrate", str(path), "k", "--to", "mv-b"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while "mv-b" not in copies(daemons, fleet, "k") and time.monotonic() < deadline:
            time.sleep(0.2)  # killed once the destination holds something of the VM
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        during = copies(daemons, fleet, "k")
        assert sum(running for running, _n in during.values()) <= 1
        move = listed(path)["k"]["migration"]  # the open move shows, its process gone
        assert isinstance(move, dict) and move["target"] == "mv-b" and move["interrupted"]

        settled = run("up", str(path))
        assert "recovered:" in settled.stderr
        after = copies(daemons, fleet, "k")
        assert len(after) == 1 and next(iter(after.values())) == (True, 2), after
    finally:
        run("down", str(path), "--yes")
    assert copies(daemons, fleet, "k") == {}


def test_drain_moves_four_vms_keeping_zone_anti_affinity_then_uncordon(
    tmp_path: Path, daemons: list[multihost.Daemon]
) -> None:
    fleet = unique_fleet("md")
    path = tmp_path / "fleet.yaml"
    vms = """  web:
    replicas: 2
    labels: {tier: web}
    node_preference: [mv-a]
    affinity:
      zoneAntiAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          labelSelector: [{matchLabels: {tier: web}}]
          topologyKey: topology.kubernetes.io/zone
  db: {replicas: 3, node_preference: [mv-a]}"""
    path.write_text(fleet_yaml(fleet, daemons, vms))
    try:
        run("up", str(path))
        before = {vm: str(r["host"]) for vm, r in listed(path).items()}
        on_a = sorted(vm for vm, h in before.items() if h == "mv-a")
        assert len(on_a) == 4, before  # one web replica and the three dbs
        drained = json.loads(
            run("drain", str(path), "mv-a", "--parallel", "2", "-o", "json").stdout
        )
        assert sorted(m["vm"] for m in drained["moves"]) == on_a
        assert drained["stuck"] == {} and drained["failed"] == {}
        after = {vm: str(r["host"]) for vm, r in listed(path).items()}
        assert "mv-a" not in after.values()
        webs = [ZONES[h] for vm, h in after.items() if vm.startswith("web")]
        assert len(set(webs)) == 2  # still one web replica per zone
        for vm in after:
            assert len(copies(daemons, fleet, vm)) == 1

        hosts = {r["host"]: r for r in json.loads(vmfleet("hosts", str(path), "-o", "json").stdout)}
        assert hosts["mv-a"]["status"] == "cordoned" and not hosts["mv-a"]["schedulable"]
        run("uncordon", str(path), "mv-a")
        hosts = {r["host"]: r for r in json.loads(vmfleet("hosts", str(path), "-o", "json").stdout)}
        assert hosts["mv-a"]["status"] == "ready"
    finally:
        run("down", str(path), "--yes")


def test_evacuate_a_stopped_host_then_up_removes_the_stale_copy(
    tmp_path: Path, daemons: list[multihost.Daemon]
) -> None:
    fleet = unique_fleet("me")
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_yaml(fleet, daemons, "  e: {node_preference: [mv-c]}"))
    c = daemons[2]
    try:
        run("up", str(path))
        assert copies(daemons, fleet, "e") == {"mv-c": (True, 2)}
        c.stop()
        result = vmfleet("evacuate", str(path), "mv-c", "-o", "json")
        assert result.returncode == 0, result.stderr + result.stdout
        new_host = json.loads(result.stdout)["recreated"]["e"]
        assert new_host in ("mv-a", "mv-b")
        c.start()  # its guest kept running while its daemon was down: a stale copy
        assert copies(daemons, fleet, "e") == {new_host: (True, 2), "mv-c": (True, 2)}
        settled = run("up", str(path))
        assert "stale copy of e on mv-c" in settled.stderr
        assert copies(daemons, fleet, "e") == {new_host: (True, 2)}
        run("uncordon", str(path), "mv-c")
    finally:
        c.start()
        run("down", str(path), "--yes")
    assert copies(daemons, fleet, "e") == {}


def test_rebalance_after_adding_a_host_moves_the_fewest_vms(
    tmp_path: Path, daemons: list[multihost.Daemon]
) -> None:
    fleet = unique_fleet("mr")
    path = tmp_path / "fleet.yaml"
    a, b = daemons[0], daemons[1]
    path.write_text(fleet_yaml(fleet, [a], "  r: {replicas: 2}"))
    try:
        run("up", str(path))
        assert {str(r["host"]) for r in listed(path).values()} == {"mv-a"}
        path.write_text(fleet_yaml(fleet, [a, b], "  r: {replicas: 2}"))  # a host is added
        proposed = json.loads(run("rebalance", str(path), "-o", "json").stdout)
        assert len(proposed["moves"]) == 1 and not proposed["applied"]
        assert proposed["load_after"]["mv-b"] > 0 == proposed["load_before"]["mv-b"]
        done = json.loads(run("rebalance", str(path), "--apply", "-o", "json").stdout)
        assert [m["to"] for m in done["moves"]] == ["mv-b"] and len(done["done"]) == 1
        assert sorted(str(r["host"]) for r in listed(path).values()) == ["mv-a", "mv-b"]
        for vm in listed(path):
            assert len(copies(daemons, fleet, vm)) == 1
    finally:
        run("down", str(path), "--yes")
