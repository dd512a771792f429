"""The arm64 micro guest (see :mod:`tests.support.images_foreign`): Debian's arm64 cloud kernel
and busybox, for direct kernel boot under ``qemu-system-aarch64`` (TCG) on the `virt`
machine. Boot it with :data:`ARM64_CMDLINE` (the PL011 UART is ttyAMA0)."""

from __future__ import annotations

from pathlib import Path

from tests.support.images_foreign import ForeignMicro

ARM64 = ForeignMicro(
    debian_arch="arm64", kernel_package="linux-image-cloud-arm64", cmdline="console=ttyAMA0"
)
ARM64_CMDLINE = ARM64.cmdline


def arm64_kernel() -> Path:
    """The Debian arm64 cloud kernel (a gzip-compressed Image; QEMU unpacks it)."""
    return ARM64.kernel()


def arm64_initrd() -> Path:
    """The busybox initramfs for :func:`arm64_kernel`."""
    return ARM64.initrd()


if __name__ == "__main__":
    print(arm64_kernel(), arm64_initrd())
