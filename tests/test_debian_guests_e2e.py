"""Two real Debian cloud-init guests, booted once for this module (a Debian boot under TCG
costs minutes of a core) and then used as users use them, test after test in file order:

1. `up` gives each replica its hostname, static address, login key, password, files, runcmd,
   data disk, full or linked clone, a root filesystem grown to the disk and a running guest
   agent; the password is in no file, XML or output; a second `up` does nothing.
2. On the fleet's network each replica finds the other by name through the network's DNS.
3. Reaching them: `vmfleet ssh NAME@i` with the host key verified from the first connection,
   ssh-config for plain ssh, NAME=IP export, an Ansible inventory that ansible-core uses,
   parallel exec, password login, the serial console.
4. Internal and external snapshots (frozen through the guest agent) bring a file back.
5. A stopped replica is not reached; `down` leaves nothing behind.

All traffic is to 127.0.0.1 (user-mode forwards) or guest to guest on an isolated network:
nothing goes from the root namespace to the private range."""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.e2e_support import debian_fleet_head, leftovers, login_key, ssh, unique_fleet, vmfleet

from vmfleet.drivers import sshkeys
from vmfleet.drivers.libvirt import LibvirtHost
from vmfleet.engine.provision.readiness import Check, Login, ReadinessWatcher

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("debian")]
VENV_BIN = Path(sys.executable).parent
PASSWORD_ENV = "E2E_VM_PASSWORD"
FLEET_VMS = """
networks:
  back: {mode: isolated, cidr: 10.251.7.0/24, dns: [10.251.7.1]}
vms:
  deb:
    replicas: 2
    memory: 512MiB
    vcpus: 1
    disk: 3GiB
    image: debian
    labels: {role: web}
    data_disks: [{size: 1GiB}]
    nics:
      - {network: user}
      - {network: back, ips: [10.251.7.10, 10.251.7.11]}
    ready: {wait_for: cloud-init, timeout: 12m}  # a password: cloud-init restarts sshd
    cloud_init:
      password: {env: E2E_VM_PASSWORD}
      apt_proxy: "http://10.251.7.1:3142"
      write_files: [{path: /etc/vmfleet-e2e, content: "written by cloud-init\\n"}]
      runcmd: ["touch /run/vmfleet-runcmd"]
    overrides:
      1: {clone: full}
"""


@dataclass(frozen=True)
class Guests:
    fleet: str
    file: str
    dir: Path
    key: Path
    password: str
    up: subprocess.CompletedProcess[str]

    def port(self, vm: str) -> int:
        rows = {r["name"]: r for r in json.loads(run_ok("list", self.file, "-o", "json"))}
        return int(next(a for a in rows[vm]["ip"] if a.startswith("127.0.0.1:")).split(":")[1])


@pytest.fixture(scope="module")
def guests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guests]:
    directory = tmp_path_factory.mktemp("debian-guests")
    fleet = unique_fleet("e2ed")
    key = login_key(directory)
    path = directory / "fleet.yaml"
    path.write_text(debian_fleet_head(fleet, key) + FLEET_VMS)
    password = "e2e-" + uuid.uuid4().hex
    os.environ[PASSWORD_ENV] = password
    try:
        up = vmfleet("up", str(path), "-o", "json", timeout=1500)
        assert up.returncode == 0, up.stderr + up.stdout
        yield Guests(fleet, str(path), directory, key, password, up)
    finally:
        vmfleet("down", str(path), "--yes")
        os.environ.pop(PASSWORD_ENV, None)


def run_ok(*args: str) -> str:
    result = vmfleet(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_replicas_get_hostname_address_key_password_files_and_disks(guests: Guests) -> None:
    public = guests.key.with_suffix(".pub").read_text().split()[1]
    # The password is in no file vmfleet wrote, no domain XML and no output.
    for written in (guests.dir / ".vmfleet").rglob("*"):
        if written.is_file():
            assert guests.password.encode() not in written.read_bytes(), written
    assert guests.password not in guests.up.stdout + guests.up.stderr
    for i in range(2):
        xml = subprocess.run(
            ["virsh", "dumpxml", f"deb-{i}"], capture_output=True, text=True, check=True
        ).stdout
        assert guests.password not in xml
    for i in range(2):
        port = guests.port(f"deb-{i}")
        out = ssh(guests.key, port, "hostname; ip -4 -o addr show; cat ~/.ssh/authorized_keys")
        assert out.splitlines()[0] == f"deb-{i}"
        assert f"10.251.7.1{i}/24" in out
        assert public in out
        extra = ssh(
            guests.key,
            port,
            "cloud-init status --wait >/dev/null;"
            " sudo grep '^vmfleet:' /etc/shadow | cut -d: -f2 | cut -c1-3;"
            " cat /etc/vmfleet-e2e /etc/apt/apt.conf.d/01proxy;"
            " test -e /run/vmfleet-runcmd && echo runcmd-ran;"
            " lsblk -dno NAME,SIZE /dev/vdc;"
            " df -B1 --output=size / | tail -n 1",
        )
        assert extra.splitlines()[0] == "$6$"
        assert "written by cloud-init" in extra
        assert 'Acquire::http::Proxy "http://10.251.7.1:3142";' in extra
        assert "runcmd-ran" in extra
        assert "vdc    1G" in extra or "vdc 1G" in " ".join(extra.split())
        # growpart + resizefs took the root filesystem from the image's 2 GiB to the 3 GiB disk
        assert int(extra.split()[-1]) > 5 << 29
        assert _agent_ping(f"deb-{i}") == '{"return":{}}'
    pool = "/var/lib/libvirt/images"
    assert _backing(f"{pool}/vmf-{guests.fleet}.deb-0.root")  # linked clone of the image
    assert _backing(f"{pool}/vmf-{guests.fleet}.deb-1.root") is None  # replica 1: full clone
    assert "nothing to do" in run_ok("up", guests.file)


PROBE = """\
import socket, struct
def ask(name):
    query = struct.pack(">HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
    query += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(30)
    s.sendto(query, ("10.251.7.1", 53))
    reply = s.recv(512)
    return socket.inet_ntoa(reply[-4:]) if struct.unpack(">H", reply[6:8])[0] else "none"
peer = ask("deb-1")
print(peer, ask("deb-1.FLEET"), ask("nosuch"))
with socket.create_connection((peer, 22), 60) as c:
    print(c.recv(64)[:7].decode())
"""


def test_a_replica_resolves_and_reaches_the_other_by_name(guests: Guests) -> None:
    """The network is `isolated` (the same libvirt dnsmasq as `nat`): on a `nat` network the
    guest's default route would leave through it, and replies to the SSH forward with it."""
    script = base64.b64encode(PROBE.replace("FLEET", guests.fleet).encode()).decode()
    probe = vmfleet("exec", guests.file, "deb-0", "--", f"echo {script} | base64 -d | python3")
    assert probe.returncode == 0, probe.stdout + probe.stderr
    answer = next(line for line in probe.stdout.splitlines() if "10.251.7.11" in line)
    assert answer.split()[-3:] == ["10.251.7.11", "10.251.7.11", "none"]
    assert "SSH-2.0" in probe.stdout


def test_reaching_the_guests_the_ways_users_do(guests: Guests) -> None:
    f = guests.file
    known = guests.dir / ".vmfleet" / "known_hosts"
    assert set(sshkeys.read_entries(known)) == {"deb-0", "deb-1"}

    # NAME@i and NAME-i, host key checked strictly against the key vmfleet provided.
    first = vmfleet("ssh", f, "deb@0", "--", "hostname")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "deb-0"
    assert run_ok("ssh", f, "deb-1", "--", "hostname").strip() == "deb-1"

    listing = vmfleet("ssh", f, "deb")
    assert listing.returncode == 2
    assert "deb-0" in listing.stdout and "deb-1" in listing.stdout
    assert "running" in listing.stdout and "127.0.0.1:" in listing.stdout
    out_of_range = vmfleet("ssh", f, "deb@5")
    assert out_of_range.returncode == 2
    assert "out of range" in out_of_range.stderr
    assert vmfleet("ssh", f, "nosuch@0").returncode == 2

    config = guests.dir / "ssh_config"
    config.write_text(run_ok("ssh-config", f))
    plain = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", "deb-1", "hostname"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == "deb-1"

    env_lines = run_ok("ips", f).splitlines()
    assert "DEB_0=127.0.0.1" in env_lines
    assert any(line.startswith("DEB_1_SSH_PORT=") for line in env_lines)
    assert set(json.loads(run_ok("ips", f, "-o", "json"))) == {"deb-0", "deb-1"}

    _ansible_reaches_both(guests)

    both = run_ok("exec", f, "deb", "--", "cat", "/etc/hostname")
    assert "== deb-0" in both and "== deb-1" in both and "exit 0" in both
    same_word = run_ok("exec", f, "deb", "--", "echo", "deb")
    assert same_word.count("\ndeb\n") == 2, same_word
    failing = vmfleet("exec", f, "deb", "--", "test", "$(hostname)", "=", "deb-0")
    assert failing.returncode == 1
    assert "1 of 2 VMs failed: deb-1" in " ".join(failing.stderr.split())

    askpass = guests.dir / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho '{guests.password}'\n")
    askpass.chmod(0o755)
    with_password = subprocess.run(
        [sys.executable, "-m", "vmfleet.cli.main", "ssh", f, "deb@0", "--password", "--", "id"],
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
    assert "(vmfleet)" in with_password.stdout.split()[0]

    assert b"login:" in _console_output(f, "deb@0")


def _ansible_reaches_both(guests: Guests) -> None:
    script = guests.dir / "inventory.sh"
    script.write_text(
        f'#!/bin/sh\nexec {sys.executable} -m vmfleet.cli.main inventory {guests.file} "$@"\n'
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
    assert sorted(groups["template_deb"]["hosts"]) == ["deb-0", "deb-1"]
    assert sorted(groups["label_role_web"]["hosts"]) == ["deb-0", "deb-1"]
    assert groups["_meta"]["hostvars"]["deb-0"]["ansible_user"] == "vmfleet"
    ping = subprocess.run(
        [str(VENV_BIN / "ansible"), "all", "-i", str(script), "-m", "ping"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert ping.stdout.count("SUCCESS") == 2


def test_a_file_in_a_guest_is_as_it_was_after_revert(guests: Guests) -> None:
    """Internal and external snapshots of deb-0, frozen through the guest agent."""
    f = guests.file
    port = guests.port("deb-0")
    ssh(guests.key, port, "echo before > ~/mark && sync && systemctl is-active qemu-guest-agent")
    for kind in ("internal", "external"):
        made = json.loads(
            run_ok("snapshot", "create", f, "deb-0", f"s-{kind}", "--type", kind, "-o", "json")
        )
        # the guest agent answers: filesystems were frozen, application-consistent
        assert [(m["type"], m["consistency"]) for m in made["members"]] == [(kind, "application")]
        ssh(guests.key, port, "echo changed > ~/mark && sync")
        back = vmfleet("snapshot", "revert", f, "deb-0", f"s-{kind}")
        assert back.returncode == 0, back.stderr + back.stdout
        # as it was; and writable again (thawed: a frozen filesystem would block the write)
        _wait_login(guests, port, "deb-0")
        out = ssh(guests.key, port, "cat ~/mark; timeout 20 touch ~/thawed && echo writable")
        assert out.split() == ["before", "writable"]
        run_ok("snapshot", "delete", f, "deb-0", f"s-{kind}")
    pool = Path("/var/lib/libvirt/images")
    assert sorted(p.name for p in pool.glob(f"vmf-{guests.fleet}.*.snap-*")) == []


def _wait_login(guests: Guests, port: int, vm: str) -> None:
    """After an external revert the guest boots again: wait with vmfleet's own readiness
    (a login with the fleet key and the VM's recorded host key)."""
    login = Login(
        user="vmfleet",
        key=guests.key,
        known_hosts=guests.dir / ".vmfleet" / "known_hosts",
        trust_new=False,
    )
    check = Check(vm, "local", "ssh", 480, "127.0.0.1", port, None, login)
    watcher = ReadinessWatcher()
    try:
        watcher.watch(check, LibvirtHost("qemu:///system", name="local")).result(500)
    finally:
        watcher.close()


def test_a_stopped_replica_is_not_reached_and_down_leaves_nothing(guests: Guests) -> None:
    """(That a recreated VM gets a new host key is vmfleet's side alone, shown on the test
    driver in test_state_recovery; the first strict connection above shows sshd serves it.)"""
    run_ok("stop", guests.file, "deb-1")
    stopped = vmfleet("ssh", guests.file, "deb@1", "--", "true")
    assert stopped.returncode == 1
    assert "not running" in stopped.stderr
    assert vmfleet("down", guests.file, "--yes").returncode == 0
    assert leftovers(guests.fleet) == []


def _backing(path: str) -> str | None:
    info = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    backing = json.loads(info).get("backing-filename")
    return str(backing) if backing else None


def _agent_ping(domain: str) -> str:
    """guest-ping through the agent channel, as an operator would with virsh."""
    deadline = time.monotonic() + 60
    command = ["virsh", "-c", "qemu:///system", "qemu-agent-command", domain]
    while True:
        result = subprocess.run(
            [*command, '{"execute":"guest-ping"}'], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 or time.monotonic() > deadline:
            return result.stdout.strip() or result.stderr.strip()
        time.sleep(1)


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
