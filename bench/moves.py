"""Moving VMs: rebalance planning at scale (pure), one live migration of a micro guest by
vmfleet against a bare `virsh migrate --live` of the same guest, and a drain of N micro
guests at parallel 4 against the same migrations one after another with `virsh`.

The migrations run between two daemons of the multihost harness (`tests.support.multihost`)
on this machine, guests under TCG. `virsh` gets what vmfleet gives libvirt: live, persistent
at the destination, the overlay copied incrementally over a base image already there, the
migration stream on 127.0.0.1; its destination disks are prepared beforehand (an empty
overlay over the base, the seed copied) and that preparation is not timed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from vmfleet.core import moves, placement
from vmfleet.drivers import names

if TYPE_CHECKING:
    from tests.support.multihost import Daemon

GIB = 1 << 30


def rebalance_planning(
    hosts: int = 1000, vms: int = 10000, max_moves: int = 5000
) -> dict[str, object]:
    """Half the hosts hold every VM; plan up to `max_moves` moves (5,000 even them out;
    goal: under 2 s)."""
    facts = []
    per_host: dict[str, int] = {}
    for n in range(vms):
        per_host[f"h{n % (hosts // 2)}"] = per_host.get(f"h{n % (hosts // 2)}", 0) + 1
    for n in range(hosts):
        used = per_host.get(f"h{n}", 0)
        facts.append(
            placement.HostFacts(
                name=f"h{n}",
                capacity=placement.Resources(64, 256 * GIB, 0),
                used=placement.Resources(used, used * GIB, 0),
                labels={"zone": f"z{n % 10}"},
            )
        )
    current = [
        moves.Current(
            placement.VmRequest(
                name=f"v{n}",
                template=f"t{n % 50}",
                vcpus=1,
                memory=GIB,
                disk=GIB,
                labels={"app": f"a{n % 50}"},
            ),
            f"h{n % (hosts // 2)}",
        )
        for n in range(vms)
    ]
    began, cpu = time.perf_counter(), time.process_time()
    plan = moves.rebalance(facts, current, max_moves=max_moves)
    took, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {
        "case": f"rebalance {hosts} hosts x {vms} VMs",
        "moves": len(plan.moves),
        "seconds": took,
        "cpu seconds": cpu,
        "peak before": max(plan.before.values()),
        "peak after": max(plan.after.values()),
    }


def _fleet(path: Path, fleet: str, daemons: list[Daemon], vms: int) -> None:
    """`vms` micro guests over `daemons`, all preferring the first."""
    from tests.support import multihost

    first = daemons[0].name
    vms_block = f"  g: {{replicas: {vms}, node_preference: [{first}]}}"
    path.write_text(multihost.fleet_yaml(fleet, daemons, vms_block, timeout="300s"))


def _vmfleet(*args: str) -> str:
    from tests.e2e_support import vmfleet

    out = vmfleet(*args, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"vmfleet {' '.join(args)}: {out.stderr}")
    return out.stdout


def _names(path: Path) -> list[str]:
    return [str(r["name"]) for r in json.loads(_vmfleet("list", str(path), "-o", "json"))]


def _virsh(uri: str, *args: str) -> str:
    return subprocess.run(
        ["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, check=True, timeout=3600
    ).stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare(src: str, dst: str, fleet: str, vm: str) -> None:
    """What vmfleet does before migrating, by hand: an empty overlay over the base (already
    on the destination) and a copy of the seed."""
    root = names.volume(fleet=fleet, vm=vm, role="root")
    seed = names.volume(fleet=fleet, vm=vm, role="seed.iso")
    backing = _virsh(src, "vol-dumpxml", "--pool", "default", root)
    base = backing.split("<backingStore>")[1].split("<path>")[1].split("</path>")[0]
    capacity = _virsh(src, "vol-info", "--bytes", "--pool", "default", root)
    size = next(line.split()[1] for line in capacity.splitlines() if line.startswith("Capacity"))
    _virsh(
        dst,
        "vol-create-as",
        "default",
        root,
        size,
        "--format",
        "qcow2",
        "--backing-vol",
        base,
        "--backing-vol-format",
        "qcow2",
    )
    with tempfile.NamedTemporaryFile() as tmp:
        _virsh(src, "vol-download", "--pool", "default", seed, tmp.name)
        length = os.path.getsize(tmp.name)
        _virsh(dst, "vol-create-as", "default", seed, str(length), "--format", "raw")
        _virsh(dst, "vol-upload", "--pool", "default", seed, tmp.name)


def _virsh_migrate(src: str, dst: str, vm: str) -> tuple[float, float | None]:
    """`virsh migrate --live` with what vmfleet's destination XML carries: disks as files at
    their paths (libvirt 9.0 cannot mirror into an existing pool volume otherwise) and the
    SSH forward on a port free at the destination (both daemons run on this machine)."""
    xml = _virsh(src, "dumpxml", "--migratable", vm)
    xml = re.sub(r"hostfwd=tcp:127\.0\.0\.1:[0-9]+-", f"hostfwd=tcp:127.0.0.1:{_free_port()}-", xml)
    xml = re.sub(
        r"<disk type='volume'(.*?)<source pool='default' volume='([^']+)'",
        r"<disk type='file'\1<source file='/var/lib/libvirt/images/\2'",
        xml,
        flags=re.DOTALL,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as spec:
        spec.write(xml)
        spec.flush()
        began = time.monotonic()
        _virsh(
            src,
            "migrate",
            "--live",
            "--p2p",
            "--persistent",
            "--copy-storage-inc",
            "--migrate-disks",
            "vda",
            "--migrateuri",
            f"tcp://127.0.0.1:{_free_port()}",
            "--listen-address",
            "127.0.0.1",
            "--disks-port",
            str(_free_port()),
            "--xml",
            spec.name,
            vm,
            dst,
        )
        took = time.monotonic() - began
    stats = _virsh(dst, "domjobinfo", "--completed", vm)
    downtime = next(
        (
            float(line.split()[2])
            for line in stats.splitlines()
            if line.startswith("Total downtime")
        ),
        None,
    )
    return took, downtime


def _cleanup(uri: str, fleet: str, vm: str) -> None:
    """What virsh leaves on its source: the shut-off definition and the volumes."""
    _virsh(uri, "undefine", vm)
    for role in ("root", "seed.iso"):
        _virsh(uri, "vol-delete", "--pool", "default", names.volume(fleet=fleet, vm=vm, role=role))


def live_migration(rounds: int = 3) -> list[dict[str, object]]:
    """One micro guest moved `rounds` times by vmfleet, then `rounds` times by bare virsh
    (its destination prepared beforehand, untimed), back and forth. Median of each."""
    from tests.support import multihost

    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    with multihost.daemons("bm-a", "bm-b") as (a, b), tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.yaml"
        fleet = "bench-mig"
        _fleet(path, fleet, [a, b], 1)
        _vmfleet("up", str(path))
        (vm,) = _names(path)
        time.sleep(10)  # let the guest finish booting
        hosts = [a, b]
        for n in range(rounds):  # vmfleet a -> b -> a -> b ...
            to = hosts[(n + 1) % 2]
            report = json.loads(_vmfleet("migrate", str(path), vm, "--to", to.name, "-o", "json"))
            ours.append((report["seconds"], report["downtime_ms"]))
        for n in range(rounds):  # then virsh back and forth (vmfleet's records go stale)
            src, dst = hosts[(rounds + n) % 2], hosts[(rounds + n + 1) % 2]
            _prepare(src.uri, dst.uri, fleet, vm)
            took, downtime = _virsh_migrate(src.uri, dst.uri, vm)
            theirs.append((took, downtime or 0.0))
            _cleanup(src.uri, fleet, vm)
    return [
        {
            "case": case,
            "seconds (median)": statistics.median(t for t, _d in runs),
            "downtime ms (median)": statistics.median(d for _t, d in runs),
            "runs": ", ".join(f"{t:.1f} s/{d:.0f} ms" for t, d in runs),
        }
        for case, runs in (("vmfleet migrate (live, p2p)", ours), ("virsh migrate --live", theirs))
    ]


def drain(vms: int = 10, parallel: int = 4) -> list[dict[str, object]]:
    """`vmfleet drain --parallel 4` of `vms` guests, against virsh one after another."""
    from tests.support import multihost

    rows: list[dict[str, object]] = []
    with multihost.daemons("bd-a", "bd-b") as (a, b), tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.yaml"
        fleet = "bench-drain"
        _fleet(path, fleet, [a, b], vms)
        _vmfleet("up", str(path))
        time.sleep(10)
        began = time.monotonic()
        _vmfleet("drain", str(path), a.name, "--parallel", str(parallel), "-o", "json")
        rows.append(
            {
                "case": f"vmfleet drain --parallel {parallel}",
                "VMs": vms,
                "seconds": time.monotonic() - began,
            }
        )
        names = _names(path)
        for vm in names:
            _prepare(b.uri, a.uri, fleet, vm)
        began = time.monotonic()
        for vm in names:
            _virsh_migrate(b.uri, a.uri, vm)
        rows.append(
            {
                "case": "virsh migrate --live, one after another (prepared)",
                "VMs": vms,
                "seconds": time.monotonic() - began,
            }
        )
    return rows


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "plan"
    if which == "plan":
        print(rebalance_planning())
    elif which == "live":
        print(live_migration())
    else:
        print(drain())
