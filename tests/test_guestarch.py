"""A guest of a foreign architecture is emulated on its own machine type and CPU: KVM only
for the host's own arch (an aarch64 VM on an x86 KVM host is TCG on `virt`, not KVM on q35),
and a farm's arm64 cell is defined that way on a host."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest
from tests.e2e_support import unique_fleet
from tests.support.testhost import TestDriverHost

from vmfleet import Fleet
from vmfleet.core.guestarch import guest_platform, uses_kvm


@pytest.mark.parametrize(
    ("arch", "host_arch", "wanted", "works", "kvm"),
    [
        ("x86_64", "x86_64", "auto", True, True),
        ("x86_64", "x86_64", "auto", False, False),
        ("x86_64", "x86_64", "kvm", False, True),
        ("aarch64", "x86_64", "kvm", True, False),
        ("aarch64", "x86_64", "auto", True, False),
        ("aarch64", "aarch64", "auto", True, True),
        ("x86_64", "x86_64", "qemu", True, False),
    ],
)
def test_kvm_only_for_the_hosts_own_arch(
    arch: str, host_arch: str, wanted: str, works: bool, kvm: bool
) -> None:
    assert uses_kvm(arch=arch, host_arch=host_arch, wanted=wanted, kvm_works=works) is kvm


@pytest.mark.parametrize(
    ("arch", "kvm", "machine", "cpu", "expected"),
    [
        ("x86_64", True, None, None, ("kvm", "q35", None)),
        ("aarch64", False, None, None, ("qemu", "virt", "cortex-a57")),
        ("aarch64", True, None, None, ("kvm", "virt", None)),
        ("aarch64", False, None, "max", ("qemu", "virt", "max")),
        ("ppc64le", False, None, "POWER9", ("qemu", "pseries", "POWER9")),
        ("x86_64", False, "pc", None, ("qemu", "pc", None)),
    ],
)
def test_machine_and_cpu_default_per_arch(
    arch: str, kvm: bool, machine: str | None, cpu: str | None, expected: tuple[object, ...]
) -> None:
    got = guest_platform(arch, kvm=kvm, machine=machine, cpu_model=cpu)
    assert (got.domain_type, got.machine, got.cpu_model) == expected


def test_a_farm_arm64_cell_is_defined_as_an_emulated_virt_machine(tmp_path: Path) -> None:
    image = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"fleet: {unique_fleet('arch')}\n"
        'hosts: {local: {uri: "test:///default", domain_type: kvm, pool: default-pool}}\n'
        f"images: {{base: {{source: {image}, arch: aarch64}}}}\n"
        "defaults: {memory: 64MiB, disk: 16MiB}\n"
        f"farm:\n  project: {{id: {unique_fleet('a')}}}\n"
        "  platforms: {deb: {image: base}}\n  matrix: {targets: [arm64], platforms: [deb]}\n"
    )
    with Fleet.open(path, state=tmp_path / "s", hosts=TestDriverHost.factory) as fleet:
        farm = fleet.farm_fleet()
        with farm:
            vm = next(iter(farm.spec.vms))
            farm.up().raise_for_failures()
            xml = ET.fromstring(libvirt.open("test:///default").lookupByName(vm).XMLDesc())
            farm.down()
    assert xml.get("type") == "qemu"
    os_type = xml.find("os/type")
    assert os_type is not None
    assert (os_type.get("arch"), os_type.get("machine")) == ("aarch64", "virt")
    assert xml.findtext("cpu/model") == "cortex-a57"
    assert xml.find("os").get("firmware") == "efi"  # type: ignore[union-attr]
