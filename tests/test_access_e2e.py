"""Reaching real Debian guests the ways users do: `vmfleet ssh NAME@i` with the host key
verified from the first connection, ssh-config for plain ssh, an Ansible inventory that
ansible-core really uses, NAME=IP export, parallel exec, password login, the serial console,
and a fresh host key when a VM is recreated."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from tests.e2e_support import debian_fleet_head, login_key, unique_fleet, vmfleet

from vmfleet.drivers import sshkeys

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("access")]
VENV_BIN = Path(sys.executable).parent


def run_ok(*args: str) -> str:
    result = vmfleet(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_reaching_debian_guests(tmp_path: Path) -> None:
    fleet = unique_fleet("e2ea")
    key = login_key(tmp_path)
    password = "pw-" + uuid.uuid4().hex[:12]
    os.environ["E2E_ACCESS_PASSWORD"] = password
    path = tmp_path / "fleet.yaml"
    path.write_text(
        debian_fleet_head(fleet, key)
        + """
vms:
  acc:
    replicas: 2
    image: debian
    memory: 512MiB
    disk: 3GiB
    labels: {role: web}
    ready: {wait_for: cloud-init, timeout: 12m}  # a password: cloud-init restarts sshd
    cloud_init: {password: {env: E2E_ACCESS_PASSWORD}}
"""
    )
    f = str(path)
    try:
        run_ok("up", f)
        known = tmp_path / ".vmfleet" / "known_hosts"
        assert set(sshkeys.read_entries(known)) == {"acc-0", "acc-1"}

        # NAME@i and NAME-i, host key checked strictly against the key vmfleet provided.
        first = vmfleet("ssh", f, "acc@0", "--", "hostname")
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == "acc-0"
        assert run_ok("ssh", f, "acc-1", "--", "hostname").strip() == "acc-1"

        listing = vmfleet("ssh", f, "acc")
        assert listing.returncode == 2
        assert "acc-0" in listing.stdout and "acc-1" in listing.stdout
        assert "running" in listing.stdout and "127.0.0.1:" in listing.stdout
        assert vmfleet("ssh", f, "acc@5").returncode == 2
        assert "out of range" in vmfleet("ssh", f, "acc@5").stderr
        assert vmfleet("ssh", f, "nosuch@0").returncode == 2

        config = tmp_path / "ssh_config"
        config.write_text(run_ok("ssh-config", f))
        plain = subprocess.run(
            ["ssh", "-F", str(config), "-o", "BatchMode=yes", "acc-1", "hostname"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert plain.returncode == 0, plain.stderr
        assert plain.stdout.strip() == "acc-1"

        env_lines = run_ok("ips", f).splitlines()
        assert "ACC_0=127.0.0.1" in env_lines
        assert any(line.startswith("ACC_1_SSH_PORT=") for line in env_lines)
        assert set(json.loads(run_ok("ips", f, "-o", "json"))) == {"acc-0", "acc-1"}

        script = tmp_path / "inventory.sh"
        script.write_text(
            f'#!/bin/sh\nexec {sys.executable} -m vmfleet.cli.main inventory {f} "$@"\n'
        )
        script.chmod(0o755)
        env = {
            **os.environ,
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        }
        listed = subprocess.run(
            [str(VENV_BIN / "ansible-inventory"), "-i", str(script), "--list"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr
        groups = json.loads(listed.stdout)
        assert sorted(groups["template_acc"]["hosts"]) == ["acc-0", "acc-1"]
        assert sorted(groups["label_role_web"]["hosts"]) == ["acc-0", "acc-1"]
        assert groups["_meta"]["hostvars"]["acc-0"]["ansible_user"] == "vmfleet"
        ping = subprocess.run(
            [str(VENV_BIN / "ansible"), "all", "-i", str(script), "-m", "ping"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert ping.stdout.count("SUCCESS") == 2

        both = run_ok("exec", f, "acc", "--", "cat", "/etc/hostname")
        assert "== acc-0" in both and "== acc-1" in both and "exit 0" in both
        same_word = run_ok("exec", f, "acc", "--", "echo", "acc")
        assert same_word.count("\nacc\n") == 2, same_word
        failing = vmfleet("exec", f, "acc", "--", "test", "$(hostname)", "=", "acc-0")
        assert failing.returncode == 1
        assert "1 of 2 VMs failed: acc-1" in " ".join(failing.stderr.split())

        askpass = tmp_path / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
        askpass.chmod(0o755)
        with_password = subprocess.run(
            [
                sys.executable,
                "-m",
                "vmfleet.cli.main",
                "ssh",
                f,
                "acc@0",
                "--password",
                "--",
                "whoami",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env={
                **os.environ,
                "SSH_ASKPASS": str(askpass),
                "SSH_ASKPASS_REQUIRE": "force",
                "DISPLAY": ":0",
            },
        )
        assert with_password.returncode == 0, with_password.stderr
        assert with_password.stdout.strip() == "vmfleet"

        assert b"login:" in _console_output(f, "acc@0")

        run_ok("stop", f, "acc-1")
        stopped = vmfleet("ssh", f, "acc@1", "--", "true")
        assert stopped.returncode == 1
        assert "not running" in stopped.stderr

        # Recreating a VM gives it a new host key, and the entry is replaced.
        old = sshkeys.read_entries(known)["acc-1"]
        run_ok("down", f, "acc-1", "--yes")
        assert "acc-1" not in sshkeys.read_entries(known)
        run_ok("up", f)
        assert sshkeys.read_entries(known)["acc-1"] != old
        again = vmfleet("ssh", f, "acc@1", "--", "hostname")
        assert again.stdout.strip() == "acc-1", again.stderr
    finally:
        os.environ.pop("E2E_ACCESS_PASSWORD", None)
        vmfleet("down", f, "--yes")


def _console_output(fleet_file: str, target: str) -> bytes:
    """Attach `vmfleet console` on a pseudo-terminal, press Enter, read, detach with Ctrl-]."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(
            sys.executable,
            [sys.executable, "-m", "vmfleet.cli.main", "console", fleet_file, target],
        )
    seen = b""
    try:
        end = time.monotonic() + 30
        os.write(fd, b"\r")
        while time.monotonic() < end and b"login:" not in seen:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
            else:
                os.write(fd, b"\r")
        os.write(fd, b"\x1d")
    finally:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    return seen
