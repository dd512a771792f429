"""vmfleet next to kcli on the same libvirtd (issue 11); virt-lightning: `bench/lightning.py`.

kcli and virt-lightning (from PyPI, unmodified) run from their own venv under .cache/others/
(made here when missing); kcli with HOME pointing at a config under .cache/others/home: one
local client on qemu:///system, pool `default`. Both sides make N guests from the same disk,
the micro guest's boot disk (`tests.support.micro_boot`: extlinux boots the micro kernel and
initramfs), 128 MiB, 1 vCPU, TCG (`virttype: qemu` for kcli), created in parallel (`kcli
create plan --threaded`; vmfleet `-j 8`), and removed again (`kcli delete plan --yes`,
`vmfleet down`). `up` returns for both once every domain runs: kcli waits for nothing more
by default, vmfleet's fleet says `ready: running`. kcli needs a libvirt network: an isolated
one (no forward, no address) is defined for the run and removed after; vmfleet's guests use
its default user-mode NIC. Each tool's up and down run alone on the host, who goes first
alternating, best of `BENCH_ROUNDS` (default 3). N from `BENCH_OTHER_SIZES` (default 10,20).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from functools import partial
from pathlib import Path

import libvirt
from tests.support.micro_boot import micro_boot_disk

from bench.provision import Timing, alternate, cli, sizes, timed

OTHERS = Path(".cache/others").resolve()
KCLI = OTHERS / "bin" / "kcli"
PACKAGES = ("kcli", "virt-lightning")
POOL_DIR = Path("/var/lib/libvirt/images")
DISK = "vmfbench-micro-boot.qcow2"
NETWORK = "vmfbench-iso"


def install() -> None:
    """The venv with kcli and virt-lightning, made when missing."""
    if KCLI.exists() and (OTHERS / "bin" / "vl").exists():
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


def boot_fleet(
    directory: Path, fleet: str, count: int, *, ready: str, host: str = "{domain_type: qemu}"
) -> str:
    """A fleet file of `count` micro guests booting `micro_boot_disk()` from their disk
    (no direct kernel boot), on host `local` (`host`: its YAML mapping); its path."""
    path = directory / "fleet.yaml"
    path.write_text(f"""
fleet: {fleet}
hosts: {{local: {host}}}
images: {{mboot: {{source: {micro_boot_disk()}}}}}
defaults: {{image: mboot, memory: 128MiB, vcpus: 1, disk: 64MiB, ready: {ready}}}
vms:
  m: {{replicas: {count}}}
""")
    return str(path)


def rows(
    tool: str, count: int, best: dict[str, tuple[Timing, Timing]], up: str
) -> list[dict[str, object]]:
    """Table rows for vmfleet next to `tool` at `count` guests (`up`: what up waits for)."""
    out: list[dict[str, object]] = []
    for index, what in enumerate((f"up {count} VMs, {up}", f"down {count} VMs")):
        ours, theirs = best["vmfleet"][index], best[tool][index]
        out.append(
            {
                "measure": what,
                "other": tool,
                "vmfleet_s": ours[0],
                "other_s": theirs[0],
                "vmfleet_cpu_s": ours[1],
                "other_cpu_s": theirs[1],
            }
        )
    return out


def version_row(package: str) -> dict[str, object]:
    return {"measure": "version", "other": f"{package} {versions()[package]}"}


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


def _kcli(home: Path, *args: str) -> Timing:
    return timed(
        [str(KCLI), *args],
        env={**os.environ, "HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def compare() -> list[dict[str, object]]:
    """vmfleet next to kcli."""
    install()
    home = _kcli_home()
    conn = libvirt.open("qemu:///system")
    shutil.copy(micro_boot_disk(), POOL_DIR / DISK)
    conn.storagePoolLookupByName("default").refresh(0)
    net = conn.networkDefineXML(
        f"<network><name>{NETWORK}</name><bridge name='vmfbench0' stp='off'/></network>"
    )
    net.create()
    out: list[dict[str, object]] = []
    try:
        for count in sizes(os.environ.get("BENCH_OTHER_SIZES", "10,20")):
            with tempfile.TemporaryDirectory() as tmp:
                path = boot_fleet(
                    Path(tmp), f"benchk-{uuid.uuid4().hex[:6]}", count, ready="running"
                )
                plan = str(_kcli_plan(Path(tmp), f"kb{uuid.uuid4().hex[:4]}", count))
                name = f"plan{uuid.uuid4().hex[:4]}"
                cli("up", path)  # warm-up: the base image is uploaded once
                cli("down", path, "--yes")
                best = alternate(
                    {
                        "vmfleet": (
                            partial(cli, "up", path, "-j", "8"),
                            partial(cli, "down", path, "--yes", "-j", "8"),
                        ),
                        "kcli": (
                            partial(_kcli, home, "create", "plan", "--threaded", "-f", plan, name),
                            partial(_kcli, home, "delete", "plan", name, "--yes"),
                        ),
                    }
                )
            out += rows("kcli", count, best, "until every domain runs")
    finally:
        net.destroy()
        net.undefine()
        (POOL_DIR / DISK).unlink(missing_ok=True)
        conn.storagePoolLookupByName("default").refresh(0)
        conn.close()
    out.append(version_row("kcli"))
    return out
