"""Image preparation with the real libguestfs tools (their appliance boots under TCG here):
extend grows the disk, its last partition and filesystem; setup writes the login user, its
key and the hostname into an image; and a Debian image without cloud-init, set up this way,
boots under `vmfleet up` and lets the fleet's key log in (through a 127.0.0.1 forward)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from tests.e2e_support import leftovers, login_key, ssh, unique_fleet, vmfleet

pytestmark = pytest.mark.e2e

GUESTFS_ENV = {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}


def _guestfish(image: Path, *commands: str) -> str:
    """Commands run in one read-only appliance with the guest's filesystems mounted."""
    script = "\n".join(commands) + "\n"
    return subprocess.run(
        ["guestfish", "--ro", "-a", str(image), "-i"],
        input=script,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
        env={**os.environ, **GUESTFS_ENV},
    ).stdout


def _prepared(cache: Path) -> list[Path]:
    return list((cache / "prepared").glob("*.qcow2"))


def test_extend_and_setup_write_into_the_image_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support import images

    cache = tmp_path / "cache"
    monkeypatch.setenv("VMFLEET_CACHE", str(cache))
    key = login_key(tmp_path)
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"""
fleet: {unique_fleet("prepx")}
hosts: {{local: {{domain_type: qemu}}}}
ssh: {{private_key: {key}, host_keys: accept-new}}
images:
  debian:
    source: {images.debian_image()}
    prepare: {{size: 3GiB, setup: {{user: debian, hostname: prepped}}}}
vms: {{one: {{image: debian}}}}
"""
    )
    start = time.monotonic()
    built = vmfleet("image", "pull", str(path), timeout=1800)
    took = time.monotonic() - start
    assert built.returncode == 0, built.stderr
    assert "prepared image debian in" in built.stderr
    print(f"prepare (extend + setup) took {took:.0f} s: {built.stderr.strip()}")
    [made] = _prepared(cache)

    start = time.monotonic()
    again = vmfleet("image", "pull", str(path))
    hit = time.monotonic() - start
    assert again.returncode == 0 and "prepar" not in again.stderr
    assert _prepared(cache) == [made]
    print(f"cache hit took {hit:.1f} s")

    out = _guestfish(
        made,
        "blockdev-getsize64 /dev/sda",
        "echo ---",
        "statvfs /",
        "echo ---",
        "cat /home/debian/.ssh/authorized_keys",
        "cat /etc/hostname",
        "cat /etc/sudoers.d/90-vmfleet-debian",
        "readlink /etc/systemd/system/multi-user.target.wants/vmfleet-ssh-host-keys.service",
        "glob-expand /etc/ssh/ssh_host_*",
        "echo ---",
        "filesize /etc/machine-id",
    )
    disk, fs, files, machine_id = out.split("---\n")
    assert int(disk) == 3 << 30
    stat = dict(line.strip().split(": ") for line in fs.splitlines() if ": " in line)
    assert int(stat["bsize"]) * int(stat["blocks"]) > (5 << 30) // 2  # grew from 2 GiB
    assert key.with_suffix(".pub").read_text().split()[1] in files
    assert "prepped\n" in files
    assert "debian ALL=(ALL) NOPASSWD:ALL" in files
    assert "/etc/systemd/system/vmfleet-ssh-host-keys.service" in files
    assert "ssh_host_" not in files  # each VM makes its own at first boot
    assert machine_id.strip() == "0"


@pytest.mark.xdist_group("debian")
def test_an_image_without_cloud_init_set_up_by_prepare_lets_the_fleet_key_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.plain_image import debian_plain_image

    monkeypatch.setenv("VMFLEET_CACHE", str(tmp_path / "cache"))
    fleet = unique_fleet("prepb")
    key = login_key(tmp_path)
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"""
fleet: {fleet}
hosts: {{local: {{domain_type: qemu}}}}
ssh: {{private_key: {key}, host_keys: accept-new}}
images:
  plain:
    source: {debian_plain_image()}
    prepare: {{setup: {{user: debian, hostname: plainbox}}}}
vms:
  plain:
    image: plain
    memory: 512MiB
    disk: 3GiB
    ready: {{wait_for: ssh, timeout: 6m}}
"""
    )
    try:
        start = time.monotonic()
        result = vmfleet("up", str(path), "-o", "json", timeout=1800)
        assert result.returncode == 0, result.stderr + result.stdout
        print(f"up (prepare + boot) took {time.monotonic() - start:.0f} s: {result.stderr}")
        assert "prepared image plain in" in result.stderr
        listed = json.loads(vmfleet("list", str(path), "-o", "json").stdout)
        port = int(next(a for a in listed[0]["ip"] if a.startswith("127.0.0.1:")).split(":")[1])
        out = ssh(key, port, "hostname; id -un; sudo -n true && echo sudo-ok", user="debian")
        assert out.split() == ["plainbox", "debian", "sudo-ok"]
        run = vmfleet("exec", str(path), "plain", "--", "cat", "/etc/hostname")
        assert run.returncode == 0 and "plainbox" in run.stdout, run.stderr + run.stdout
        assert vmfleet("down", str(path), "--yes").returncode == 0
        assert leftovers(fleet) == []
    finally:
        vmfleet("down", str(path), "--yes")
