"""Helpers for end-to-end tests: run the real CLI, inspect the real libvirtd."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

SYSTEM_URI = "qemu:///system"


def vmfleet(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 900,
    input: str | None = None,
    env: dict[str, str] | None = None,
    inherit: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run the vmfleet CLI as a user would; output captured, exit code returned. `env` adds
    to (or, with "", blanks) the environment; $VMFLEET_FILE is blank unless given. Without
    `inherit` the CLI sees only COLUMNS, a bare PATH and `env` (no user settings)."""
    base = dict(os.environ) if inherit else {"PATH": "/usr/bin:/bin"}
    env = {**base, "COLUMNS": "200", "VMFLEET_FILE": "", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vmfleet.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=timeout,
        env=env,
        input=input,
    )


def timed_farm_run(path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`vmfleet farm run PATH -o json ARGS…` (25 minutes at most) and its wall time in s."""
    started = time.monotonic()
    done = vmfleet("farm", "run", str(path), "-o", "json", *args, timeout=1500)
    return done, time.monotonic() - started


def unique_fleet(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _fleet_domains(conn: libvirt.virConnect, fleet: str) -> list[str]:
    """Names of the fleet's domains. Tests on other workers create and remove their own
    domains meanwhile: one that vanishes between listing and reading is simply gone."""
    names = []
    for dom in conn.listAllDomains():
        try:
            xml = dom.XMLDesc(0)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue
            raise
        if f"<vmfleet:fleet>{fleet}</vmfleet:fleet>" in xml or dom.name().startswith(f"{fleet}-"):
            names.append(dom.name())
    return names


def _refresh(uri: str, pool: str) -> None:
    """Rescan a pool, waiting while an upload into it (another test's) runs."""
    from vmfleet.drivers.libvirt import LibvirtHost

    host = LibvirtHost(uri, name="leftovers")
    try:
        host.pool_info(pool, refresh=True)
    finally:
        host.close()


def leftovers(fleet: str, uri: str = SYSTEM_URI) -> list[str]:
    """Every domain, volume and network on the host that belongs to `fleet`."""
    conn = libvirt.open(uri)
    try:
        found = [f"domain {name}" for name in _fleet_domains(conn, fleet)]
        for pool in conn.listAllStoragePools():
            if pool.isActive():
                _refresh(uri, pool.name())
                found += [
                    f"volume {v.name()}"
                    for v in pool.listAllVolumes()
                    if v.name().startswith(f"vmf-{fleet}.")
                ]
        found += [
            f"network {n.name()}"
            for n in conn.listAllNetworks()
            if n.name().startswith(f"vmf-{fleet}.")
        ]
        return found
    finally:
        conn.close()


def ssh(key: Path, port: int, command: str, *, user: str = "vmfleet") -> str:
    """Run a command in a guest through its 127.0.0.1 forward; its stdout."""
    result = subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-p",
            str(port),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=30",
            "-o",
            "LogLevel=ERROR",
            f"{user}@127.0.0.1",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=300,  # a guest's vCPU shares the host's cores with every other test's guests
        check=True,
    )
    return result.stdout


def micro_fleet_yaml(
    fleet: str,
    *,
    replicas: int,
    ready: str = "none",
    template: str = "m",
    extra_defaults: str = "",
) -> str:
    """A fleet of micro guests (cloud kernel + busybox initramfs) on this host, under TCG."""
    return micro_fleet(
        fleet,
        hosts="  local: {domain_type: qemu}",
        vms=f"  {template}: {{replicas: {replicas}}}",
        ready=ready,
        extra_defaults=extra_defaults,
    )


def micro_fleet(
    fleet: str,
    *,
    hosts: str,
    vms: str,
    ready: str = "none",
    timeout: str = "90s",
    extra_defaults: str = "",
) -> str:
    """A fleet of micro guests on any hosts: `hosts` and `vms` are the lines of those YAML
    blocks (indented by two). `no_timer_check`: TCG on a loaded machine can otherwise panic
    with 'IO-APIC + timer doesn't work'."""
    from tests.support import images

    return f"""
fleet: {fleet}
hosts:
{hosts}
images:
  micro: {{source: {images.micro_disk()}}}
defaults:
  image: micro
  memory: 128MiB
  disk: 64MiB
  kernel:
    kernel: {images.micro_kernel()}
    initrd: {images.micro_initrd()}
    cmdline: console=ttyS0 no_timer_check
  ready: {{wait_for: {ready}, timeout: {timeout}}}
{extra_defaults}
vms:
{vms}
"""


def login_key(directory: Path) -> Path:
    """A fresh ed25519 login key for a test fleet (`ssh: {private_key: …}`)."""
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def debian_fleet_head(fleet: str, key: Path) -> str:
    """The top of a fleet of real Debian guests on this host under TCG, logging in with `key`:
    append `networks:` / `vms:` to it."""
    from tests.support import images

    return f"""
fleet: {fleet}
hosts:
  local: {{domain_type: qemu}}
ssh: {{private_key: {key}}}
images:
  debian: {{source: {images.debian_image()}}}
"""


def up_and_greet(path: Path, vm: str, *, timeout: float = 1200) -> ET.Element:
    """`up` a fleet of one micro guest (print how long it took), check it runs and answers
    with its SSH banner through its 127.0.0.1 forward; the domain's live XML."""
    started = time.monotonic()
    up = vmfleet("up", str(path), timeout=timeout)
    print(f"{vm}: up until port 22 answered in {time.monotonic() - started:.1f} s")
    assert up.returncode == 0, up.stderr
    conn = libvirt.open(SYSTEM_URI)
    try:
        xml = ET.fromstring(conn.lookupByName(vm).XMLDesc())
    finally:
        conn.close()
    (listed,) = json.loads(vmfleet("list", str(path), "-o", "json").stdout)
    assert listed["state"] == "running"
    (forward,) = [a for a in listed["ip"] if a.startswith("127.0.0.1:")]
    port = int(forward.rsplit(":", 1)[1])
    from tests.support import images

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        greeting = sock.recv(64)
    assert greeting.startswith(images.MICRO_BANNER_PREFIX.encode()), greeting
    return xml
