"""vmfleet next to virt-lightning, both inside a network namespace made for the run (issue 11).

`vl up` waits until every guest answers on TCP 22 at its address on virt-lightning's NAT
network (it reads the first bytes and wants them to start with `SSH`: a banner, no login).
Those probes must not leave the host's root namespace for a private address, so the run
makes a network namespace and starts a libvirtd inside it (`scripts/multihost.sh` under `ip
netns exec`: its own sockets, pools and /etc/libvirt, KVM hidden, so TCG). virt-lightning's
NAT network, its dnsmasq and the guests' taps live in that namespace, and `vl` runs there.
vmfleet runs there too, against the same libvirtd (`qemu+unix` to its socket), with its
default user-mode NIC (port 22 forwarded from the namespace's 127.0.0.1) and `ready: port:22`:
through a forward that holds until the guest's port sends data, here the banner (no login
either). Not a NAT network: vmfleet gives addresses on its NAT networks through cloud-init's
network-config, which the micro guest does not read (it only asks DHCP).

virt-lightning (PyPI, unmodified, the venv of `bench/others.py`) reads
`$HOME/.config/virt-lightning/config.ini` (HOME under .cache/others/vlhome): that libvirt URI,
network `vmfbench-vl` on 192.168.123.0/24, pool `virt-lightning`, a fresh ed25519 key. It
insists on /var/lib/virt-lightning/pool/upstream existing and makes its pool there; the image
is `upstream/micro-boot.qcow2` (a copy of the micro boot disk) with an empty
`micro-boot.yaml`; each guest: 128 MiB, 1 vCPU, a 1 GB overlay on it, and the OpenStack
config drive vl writes. Each tool's up and down run alone, who goes first alternating, best of
`BENCH_ROUNDS` (default 3); N from `BENCH_VL_SIZES` (default 10,20). Everything made here is
removed after: domains, networks, the daemons, the namespace, /var/lib/virt-lightning (when
the run made it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import libvirt
from tests.support.micro_boot import micro_boot_disk

from bench.others import OTHERS, boot_fleet, install, rows, version_row
from bench.provision import Timing, alternate, cli, sizes, timed

NETNS = "vmfbench-vl"
DAEMON = "vl"
DAEMON_DIR = Path("/var/tmp/vmfbench-vl")
MULTIHOST = Path(__file__).resolve().parents[1] / "scripts" / "multihost.sh"
VL = OTHERS / "bin" / "vl"
VL_HOME = OTHERS / "vlhome"
VL_DIR = Path("/var/lib/virt-lightning")
VL_CIDR = "192.168.123.0/24"  # virt-lightning's default; only inside the namespace
DISTRO = "micro-boot"
INSIDE = ("ip", "netns", "exec", NETNS)


def _multihost(action: str) -> str:
    done = subprocess.run(
        [*INSIDE, "bash", str(MULTIHOST), action, DAEMON],
        env={**os.environ, "VMFLEET_MULTIHOST_DIR": str(DAEMON_DIR)},
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return done.stdout.strip()


@contextmanager
def namespace_daemon() -> Iterator[str]:
    """A network namespace with a libvirtd inside; its URI. Removed on the way out."""
    made_vl_dir = not VL_DIR.exists()
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        subprocess.run([*INSIDE, "ip", "link", "set", "lo", "up"], check=True)
        uri = _multihost("start")
        try:
            yield uri
        finally:
            _drop_networks(uri)
            _multihost("remove")  # its domains, its two daemons (by their pid files), files
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], check=True)
        shutil.rmtree(DAEMON_DIR, ignore_errors=True)
        if made_vl_dir:
            shutil.rmtree(VL_DIR, ignore_errors=True)


def _drop_networks(uri: str) -> None:
    """Stop every network of the daemon (their dnsmasq) before the daemon goes."""
    conn = libvirt.open(uri)
    try:
        for net in conn.listAllNetworks():
            if net.isActive():
                net.destroy()
            if net.isPersistent():
                net.undefine()
    finally:
        conn.close()


def _vl_setup(uri: str) -> None:
    (VL_HOME / ".config" / "virt-lightning").mkdir(parents=True, exist_ok=True)
    key = VL_HOME / ".ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (VL_HOME / ".config" / "virt-lightning" / "config.ini").write_text(
        f"[main]\nlibvirt_uri = {uri}\nnetwork_name = vmfbench-vl\n"
        f"network_cidr = {VL_CIDR}\nstorage_pool = virt-lightning\nroot_password = root\n"
        f"ssh_key_file = {key}.pub\n"
    )
    upstream = VL_DIR / "pool" / "upstream"
    upstream.mkdir(parents=True, exist_ok=True)
    for path in (VL_DIR, upstream.parent, upstream):
        path.chmod(0o755)  # QEMU (libvirt-qemu) reads the image through them
    shutil.copyfile(micro_boot_disk(), upstream / f"{DISTRO}.qcow2")
    (upstream / f"{DISTRO}.yaml").write_text("{}\n")


def _vl(*args: str) -> Timing:
    return timed(
        [*INSIDE, "env", f"HOME={VL_HOME}", str(VL), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _vl_yaml(directory: Path, prefix: str, count: int) -> str:
    path = directory / "virt-lightning.yaml"
    host = f"distro: {DISTRO}, memory: 128, vcpus: 1, disks: [{{size: 1}}]"
    path.write_text("".join(f"- {{name: {prefix}-{i}, {host}}}\n" for i in range(count)))
    return str(path)


def compare() -> list[dict[str, object]]:
    """vmfleet next to virt-lightning in a network namespace (see the module's text)."""
    install()
    out: list[dict[str, object]] = []
    with namespace_daemon() as uri:
        _vl_setup(uri)
        for count in sizes(os.environ.get("BENCH_VL_SIZES", "10,20")):
            with tempfile.TemporaryDirectory() as tmp:
                path = boot_fleet(
                    Path(tmp),
                    f"benchvl-{uuid.uuid4().hex[:6]}",
                    count,
                    ready="{wait_for: 'port:22', timeout: 10m}",
                    host=f'{{uri: "{uri}", domain_type: qemu}}',
                )
                plan = _vl_yaml(Path(tmp), f"vlb{uuid.uuid4().hex[:4]}", count)
                cli("up", path, inside=INSIDE)  # warm-up: the base image is uploaded once
                cli("down", path, "--yes", inside=INSIDE)
                best = alternate(
                    {
                        "vmfleet": (
                            partial(cli, "up", path, "-j", "8", inside=INSIDE),
                            partial(cli, "down", path, "--yes", "-j", "8", inside=INSIDE),
                        ),
                        "vl": (
                            partial(_vl, "up", "--virt-lightning-yaml", plan),
                            partial(_vl, "down"),
                        ),
                    }
                )
            out += rows("vl", count, best, "every guest's port 22 shows an SSH banner")
    out.append(version_row("virt-lightning"))
    return out
