"""An arm64 guest on this x86 host: Debian's arm64 cloud kernel and a busybox initramfs boot
under qemu-system-aarch64 (TCG, `virt` machine, cortex-a57 chosen for it) and answer SSH
through a 127.0.0.1 forward, with the domain defined as an emulated aarch64 machine; and the
same guest started by Debian's AAVMF UEFI firmware (pflash code, a per-VM NVRAM file), whose
snapshots are external, and which `down` removes with its NVRAM and overlay files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.e2e_support import leftovers, unique_fleet, up_and_greet, vmfleet
from tests.support import images
from tests.support.images_arm64 import ARM64_CMDLINE, arm64_initrd, arm64_kernel

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("micro")]

POOL = Path("/var/lib/libvirt/images")


def arm_fleet(path: Path, fleet: str, vm: str, extra: str = "") -> None:
    path.write_text(f"""
fleet: {fleet}
hosts: {{local: {{domain_type: auto}}}}
images: {{micro: {{source: {images.micro_disk()}, arch: aarch64}}}}
networks: {{fwd: {{mode: user}}}}
vms:
  {vm}:
    arch: aarch64
    image: micro
    memory: 256MiB
    vcpus: 1
    disk: 64MiB
    network: fwd
    kernel: {{kernel: {arm64_kernel()}, initrd: {arm64_initrd()}, cmdline: {ARM64_CMDLINE}}}
    ready: {{wait_for: "port:22", timeout: 900s}}
{extra}""")


def test_arm64_micro_guest_boots_under_tcg_and_answers_ssh(tmp_path: Path) -> None:
    fleet = unique_fleet("arm")
    path = tmp_path / "fleet.yaml"
    arm_fleet(path, fleet, "arm")
    try:
        xml = up_and_greet(path, "arm")
        assert xml.get("type") == "qemu"
        os_type = xml.find("os/type")
        assert os_type is not None and os_type.get("arch") == "aarch64"
        assert (os_type.get("machine") or "").startswith("virt")
        assert xml.findtext("cpu/model") == "cortex-a57"
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []


def test_arm64_guest_boots_through_aavmf_and_takes_external_snapshots(tmp_path: Path) -> None:
    fleet = unique_fleet("armefi")
    path = tmp_path / "fleet.yaml"
    arm_fleet(path, fleet, "armefi", extra="    firmware: uefi\n")
    nvram: Path | None = None
    try:
        xml = up_and_greet(path, "armefi")
        loader = xml.find("os/loader")
        assert loader is not None and loader.get("type") == "pflash"
        assert (loader.text or "").startswith("/usr/share/AAVMF/")
        nvram = Path(xml.findtext("os/nvram") or "")
        assert nvram.is_file()
        internal = vmfleet(
            "snapshot", "create", str(path), "armefi", "inside", "--type", "internal"
        )
        assert internal.returncode == 2
        assert "internal snapshots are impossible with UEFI firmware (armefi)" in internal.stderr
        started = time.monotonic()
        created = vmfleet("snapshot", "create", str(path), "armefi", "booted")
        print(f"armefi: external snapshot in {time.monotonic() - started:.1f} s")
        assert created.returncode == 0, created.stderr + created.stdout
        listed = json.loads(vmfleet("snapshot", "list", str(path), "-o", "json").stdout)
        assert [(r["vm"], r["name"], r["type"]) for r in listed] == [
            ("armefi", "booted", "external")
        ]
        assert list(POOL.glob(f"vmf-{fleet}.armefi.*.snap-booted"))
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []
    assert nvram is not None and not nvram.exists()
