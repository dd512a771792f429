"""vmfleet next to kcli on the same libvirtd, interleaved in one run (issue 11).

kcli (from PyPI, unmodified) runs from its own venv under .cache/others/ (made here when
missing), with HOME pointing at a config under .cache/others/home: one local client on
qemu:///system, pool `default`. Both sides make N guests from the micro guest's disk,
128 MiB, 1 vCPU, TCG (`virttype: qemu` for kcli), created in parallel (`kcli create plan
--threaded`; vmfleet `-j 8`), and remove them again (`kcli delete plan --yes`, `vmfleet down`).
kcli cannot boot a kernel directly, so its guests sit in the firmware (no bootloader on that
disk): this compares "until every domain runs" and removal, not boot. kcli needs a libvirt
network: an isolated one (no forward, no address) is defined for the run and removed after.
N from `BENCH_OTHER_SIZES` (default 10,20).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import libvirt
from tests.e2e_support import micro_fleet_yaml
from tests.support import images

from bench.provision import cli, sizes, timed

OTHERS = Path(".cache/others").resolve()
KCLI = OTHERS / "bin" / "kcli"
PACKAGES = ("kcli", "virt-lightning")
POOL_DIR = Path("/var/lib/libvirt/images")
DISK = "vmfbench-micro.qcow2"
NETWORK = "vmfbench-iso"


def _install() -> None:
    if KCLI.exists():
        return
    subprocess.run(["python3", "-m", "venv", str(OTHERS)], check=True)
    subprocess.run([str(OTHERS / "bin" / "pip"), "install", "-q", *PACKAGES], check=True)


def versions() -> dict[str, str]:
    out = subprocess.run(
        [str(OTHERS / "bin" / "pip"), "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = dict(line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {name: found.get(name, "?") for name in PACKAGES}


def _kcli_home() -> Path:
    home = OTHERS / "home"
    (home / ".kcli").mkdir(parents=True, exist_ok=True)
    (home / ".kcli" / "config.yml").write_text(
        "default: {client: local}\nlocal: {type: kvm, host: 127.0.0.1, pool: default}\n"
    )
    return home


def _kcli_plan(directory: Path, prefix: str, count: int) -> Path:
    vm = f"  image: {DISK}\n  memory: 128\n  numcpus: 1\n  virttype: qemu\n  nets: [{NETWORK}]\n"
    path = directory / "plan.yml"
    path.write_text("".join(f"{prefix}-{i}:\n{vm}" for i in range(count)))
    return path


def _kcli(home: Path, *args: str) -> tuple[float, float]:
    return timed(
        [str(KCLI), *args],
        env={**os.environ, "HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def compare() -> list[dict[str, object]]:
    _install()
    home = _kcli_home()
    conn = libvirt.open("qemu:///system")
    shutil.copy(images.micro_disk(), POOL_DIR / DISK)
    conn.storagePoolLookupByName("default").refresh(0)
    net = conn.networkDefineXML(
        f"<network><name>{NETWORK}</name><bridge name='vmfbench0' stp='off'/></network>"
    )
    net.create()
    rows: list[dict[str, object]] = []
    try:
        for count in sizes(os.environ.get("BENCH_OTHER_SIZES", "10,20")):
            with tempfile.TemporaryDirectory() as tmp:
                fleet = f"benchk-{uuid.uuid4().hex[:6]}"
                path = Path(tmp) / "fleet.yaml"
                path.write_text(micro_fleet_yaml(fleet, replicas=count))
                plan = _kcli_plan(Path(tmp), f"kb{uuid.uuid4().hex[:4]}", count)
                name = plan.stem + uuid.uuid4().hex[:4]
                cli("up", str(path))  # warm-up: the base image is uploaded once
                cli("down", str(path), "--yes")
                up = cli("up", str(path), "-j", "8")
                kup = _kcli(home, "create", "plan", "--threaded", "-f", str(plan), name)
                down = cli("down", str(path), "--yes", "-j", "8")
                kdown = _kcli(home, "delete", "plan", name, "--yes")
            for what, ours, theirs in (("up, all running", up, kup), ("down", down, kdown)):
                rows.append(
                    {
                        "measure": f"{what}, {count} VMs",
                        "vmfleet_s": ours[0],
                        "kcli_s": theirs[0],
                        "vmfleet_cpu_s": ours[1],
                        "kcli_cpu_s": theirs[1],
                    }
                )
    finally:
        net.destroy()
        net.undefine()
        (POOL_DIR / DISK).unlink(missing_ok=True)
        conn.storagePoolLookupByName("default").refresh(0)
        conn.close()
    rows.append({"measure": "versions", "vmfleet_s": str(versions())})
    return rows
