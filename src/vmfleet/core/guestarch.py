"""How a guest of one architecture runs: the machine type and CPU model when the file
names none, and KVM only for the host's own architecture.

An aarch64 guest on an x86_64 host is emulated (TCG) on QEMU's `virt` machine with a
64-bit CPU model (QEMU's default on `virt` is a 32-bit cortex-a15); ppc64le gets `pseries`.
"""

from __future__ import annotations

from dataclasses import dataclass

MACHINES = {
    "x86_64": "q35",
    "i686": "q35",
    "aarch64": "virt",
    "armv7l": "virt",
    "riscv64": "virt",
    "ppc64le": "pseries",
    "ppc64": "pseries",
    "s390x": "s390-ccw-virtio",
}
TCG_CPUS = {"aarch64": "cortex-a57"}


@dataclass(frozen=True, slots=True)
class GuestPlatform:
    domain_type: str
    machine: str | None
    cpu_model: str | None


def uses_kvm(*, arch: str, host_arch: str, wanted: str, kvm_works: bool) -> bool:
    """KVM only where the guest's arch is the host's and KVM is asked for (`kvm`) or really
    works (`auto`); a foreign arch is always emulated, whatever the host's setting."""
    return arch == host_arch and (wanted == "kvm" or (wanted == "auto" and kvm_works))


def guest_platform(
    arch: str, *, kvm: bool, machine: str | None, cpu_model: str | None
) -> GuestPlatform:
    """The domain type, machine and CPU for a guest; the file's machine and CPU win."""
    cpu = cpu_model if cpu_model is not None or kvm else TCG_CPUS.get(arch)
    return GuestPlatform("kvm" if kvm else "qemu", machine or MACHINES.get(arch), cpu)
