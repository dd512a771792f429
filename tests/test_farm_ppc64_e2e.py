"""A ppc64le guest on this x86 host: Debian's ppc64el kernel and a busybox initramfs boot
under qemu-system-ppc64 (TCG) on the `pseries` machine with the farm's POWER9 CPU, print
their ready line on the sPAPR console (hvc0, logged to the host) and answer SSH through a
127.0.0.1 forward, whose user-mode NIC QEMU puts on the machine's only PCI bus, pci.0."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e_support import leftovers, unique_fleet, up_and_greet, vmfleet
from tests.support import images
from tests.support.images_ppc64 import PPC64

from vmfleet.drivers import names

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("micro")]


def test_ppc64le_micro_guest_boots_on_pseries_to_its_console_prompt(tmp_path: Path) -> None:
    fleet = unique_fleet("ppc")
    path = tmp_path / "fleet.yaml"
    path.write_text(f"""
fleet: {fleet}
hosts: {{local: {{domain_type: auto}}}}
images: {{micro: {{source: {images.micro_disk()}, arch: ppc64le}}}}
networks: {{fwd: {{mode: user}}}}
vms:
  ppc:
    arch: ppc64le
    cpu_model: POWER9
    image: micro
    memory: 512MiB
    vcpus: 1
    disk: 64MiB
    network: fwd
    kernel: {{kernel: {PPC64.kernel()}, initrd: {PPC64.initrd()}, cmdline: {PPC64.cmdline}}}
    ready: {{wait_for: "port:22", timeout: 600s}}
""")
    try:
        xml = up_and_greet(path, "ppc", timeout=900)
        assert xml.get("type") == "qemu"
        os_type = xml.find("os/type")
        assert os_type is not None and os_type.get("arch") == "ppc64le"
        assert (os_type.get("machine") or "").startswith("pseries")
        assert xml.findtext("cpu/model") == "POWER9"
        assert xml.find("devices/serial/target[@type='spapr-vio-serial']") is not None
        assert xml.findall("devices/input") == [] and xml.find("devices/graphics") is None
        log = Path(names.serial_log("ppc")).read_text(errors="replace")
        assert images.MICRO_READY_LINE in log
    finally:
        vmfleet("down", str(path), "--yes")
    assert leftovers(fleet) == []
    assert not Path(names.serial_log("ppc")).exists()
