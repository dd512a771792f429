"""An arm64 guest on this x86 host: Debian's arm64 cloud kernel and a busybox initramfs boot
under qemu-system-aarch64 (TCG, `virt` machine, cortex-a57 chosen for it) and answer SSH
through a 127.0.0.1 forward, with the domain defined as an emulated aarch64 machine."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest
from tests.e2e_support import SYSTEM_URI, leftovers, unique_fleet, vmfleet
from tests.support import images
from tests.support.images_arm64 import ARM64_CMDLINE, arm64_initrd, arm64_kernel

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("micro")]


def banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        return conn.recv(64)


def test_arm64_micro_guest_boots_under_tcg_and_answers_ssh(tmp_path: Path) -> None:
    fleet = unique_fleet("arm")
    path = tmp_path / "fleet.yaml"
    path.write_text(f"""
fleet: {fleet}
hosts: {{local: {{domain_type: auto}}}}
images: {{micro: {{source: {images.micro_disk()}, arch: aarch64}}}}
networks: {{fwd: {{mode: user}}}}
vms:
  arm:
    arch: aarch64
    image: micro
    memory: 256MiB
    vcpus: 1
    disk: 64MiB
    network: fwd
    kernel: {{kernel: {arm64_kernel()}, initrd: {arm64_initrd()}, cmdline: {ARM64_CMDLINE}}}
    ready: {{wait_for: "port:22", timeout: 900s}}
""")
    try:
        up = vmfleet("up", str(path), timeout=1200)
        assert up.returncode == 0, up.stderr
        conn = libvirt.open(SYSTEM_URI)
        try:
            xml = ET.fromstring(conn.lookupByName("arm").XMLDesc())
        finally:
            conn.close()
        assert xml.get("type") == "qemu"
        os_type = xml.find("os/type")
        assert os_type is not None and os_type.get("arch") == "aarch64"
        assert (os_type.get("machine") or "").startswith("virt")
        assert xml.findtext("cpu/model") == "cortex-a57"
        listed = json.loads(vmfleet("list", str(path), "-o", "json").stdout)
        assert listed[0]["state"] == "running"
        (forward,) = [a for a in listed[0]["ip"] if a.startswith("127.0.0.1:")]
        port = int(forward.rsplit(":", 1)[1])
        assert banner(port).startswith(images.MICRO_BANNER_PREFIX.encode())
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []
