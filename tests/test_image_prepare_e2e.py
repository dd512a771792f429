"""Image preparation with the real libguestfs tools (their appliance boots under TCG here),
in one test because each tool run boots that appliance: a Debian image without cloud-init,
extended (disk, last partition, filesystem) and set up (login user with the fleet's key,
sudo, hostname, host keys made at first boot), boots under `vmfleet up` and the fleet's key
logs in through a 127.0.0.1 forward; a second pull is a cache hit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.e2e_support import leftovers, login_key, ssh, unique_fleet, vmfleet

pytestmark = pytest.mark.e2e


def test_an_image_without_cloud_init_extended_and_set_up_lets_the_fleet_key_in(
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
    prepare: {{size: 3GiB, setup: {{user: debian, hostname: plainbox}}}}
vms:
  plain:
    image: plain
    memory: 512MiB
    disk: 3GiB
    ready: {{wait_for: ssh, timeout: 12m}}
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
        out = ssh(
            key,
            port,
            "hostname; id -un; sudo -n true && echo sudo-ok;"
            " systemctl is-enabled vmfleet-ssh-host-keys.service;"
            " test -s /etc/machine-id && echo machine-id-made;"
            " df -B1 --output=size / | tail -n 1",
            user="debian",
        )
        lines = out.split()
        assert lines[:5] == ["plainbox", "debian", "sudo-ok", "enabled", "machine-id-made"]
        assert int(lines[5]) > (5 << 30) // 2  # the 2 GiB root filesystem grew to ~3 GiB
        start = time.monotonic()
        again = vmfleet("image", "pull", str(path))
        print(f"cache hit took {time.monotonic() - start:.1f} s")
        assert again.returncode == 0 and "prepar" not in again.stderr
        run = vmfleet("exec", str(path), "plain", "--", "cat", "/etc/hostname")
        assert run.returncode == 0 and "plainbox" in run.stdout, run.stderr + run.stdout
        assert vmfleet("down", str(path), "--yes").returncode == 0
        assert leftovers(fleet) == []
    finally:
        vmfleet("down", str(path), "--yes")
