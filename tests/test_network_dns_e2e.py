"""Two real Debian guests on a vmfleet network find each other by name: from inside `web`
(reached over SSH through its user-mode NIC's 127.0.0.1 forward), the network's DNS server
answers `db` and `db.FLEET` with db's address and db's sshd answers on it. All test traffic is
guest to guest, or to 127.0.0.1; nothing goes from the root namespace to the private range.

The network is `isolated` (the same libvirt dnsmasq as `nat`): on a `nat` network the guest's
default route would leave through it, and replies to the user-mode SSH forward with it."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from tests.e2e_support import debian_fleet_head, login_key, unique_fleet, vmfleet

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("debian")]

PROBE = """\
import socket, struct
def ask(name):
    query = struct.pack(">HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
    query += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(query, ("10.252.9.1", 53))
    reply = s.recv(512)
    return socket.inet_ntoa(reply[-4:]) if struct.unpack(">H", reply[6:8])[0] else "none"
db = ask("db")
print(db, ask("db.FLEET"), ask("nosuch"))
with socket.create_connection((db, 22), 5) as c:
    print(c.recv(64)[:7].decode())
"""


def test_web_resolves_and_reaches_db(tmp_path: Path) -> None:
    fleet = unique_fleet("e2edns")
    key = login_key(tmp_path)
    path = tmp_path / "fleet.yaml"
    vm = (
        "    image: debian\n    memory: 512MiB\n    disk: 3GiB\n"
        "    ready: {wait_for: ssh, timeout: 12m}\n"
    )
    path.write_text(
        debian_fleet_head(fleet, key)
        + "networks:\n  lab: {mode: isolated, cidr: 10.252.9.0/24, dns: [10.252.9.1]}\n"
        + "vms:\n  db:\n"
        + vm
        + "    nics: [{network: user}, {network: lab, ips: [10.252.9.20]}]\n"
        + "  web:\n"
        + vm
        + "    nics: [{network: user}, {network: lab, ips: [10.252.9.10]}]\n"
    )
    f = str(path)
    script = base64.b64encode(PROBE.replace("FLEET", fleet).encode()).decode()
    try:
        up = vmfleet("up", f)
        assert up.returncode == 0, up.stdout + up.stderr
        deadline = time.monotonic() + 120
        while True:  # sshd answers a moment before logins work
            probe = vmfleet("exec", f, "web", "--", f"echo {script} | base64 -d | python3")
            if probe.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert probe.returncode == 0, probe.stdout + probe.stderr
        answer = next(line for line in probe.stdout.splitlines() if "10.252.9.20" in line)
        assert answer.split()[-3:] == ["10.252.9.20", "10.252.9.20", "none"]
        assert "SSH-2.0" in probe.stdout
    finally:
        down = vmfleet("down", f, "--yes")
        assert down.returncode == 0, down.stdout + down.stderr
