"""The ppc64le micro guest (see :mod:`tests.support.images_foreign`): Debian's ppc64el kernel
and busybox, for direct kernel boot under ``qemu-system-ppc64`` (TCG) on the `pseries`
machine. Boot it with :data:`PPC64_CMDLINE` (the sPAPR virtual console is hvc0)."""

from __future__ import annotations

from tests.support.images_foreign import ForeignMicro

PPC64 = ForeignMicro(
    debian_arch="ppc64el", kernel_package="linux-image-powerpc64le", cmdline="console=hvc0"
)
PPC64_CMDLINE = PPC64.cmdline

if __name__ == "__main__":
    print(PPC64.kernel(), PPC64.initrd())
