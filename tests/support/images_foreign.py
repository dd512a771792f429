"""Micro guests of foreign architectures: the x86 micro guest's recipe (``images.MICRO_FILES``:
DHCP on eth0, an SSH banner on port 22, ``vmfleet-micro: ready`` on the console) with a
Debian kernel and busybox of another architecture, for direct kernel boot under TCG.

Packages come from the host's Debian mirror through ``mmdebstrap --architectures=ARCH`` (no
change to the host's dpkg architectures). The foreign busybox cannot run here to list its
applets, so the initramfs is laid out with the host's busybox-static (same Debian release,
same applets) and the foreign binary is swapped in before it is packed.
"""

from __future__ import annotations

import functools
import gzip
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support import images

HOST_BUSYBOX = Path("/bin/busybox")


@dataclass(frozen=True)
class ForeignMicro:
    """One architecture's micro guest: the Debian architecture name, its kernel package and
    the kernel command line that puts the console on the machine's serial device."""

    debian_arch: str
    kernel_package: str
    cmdline: str

    def kernel(self) -> Path:
        """The Debian kernel (QEMU unpacks a compressed one)."""
        return self._artifacts() / "vmlinuz"

    def initrd(self) -> Path:
        """The busybox initramfs for :meth:`kernel`, as :func:`images.micro_initrd`."""
        return self._artifacts() / "initrd.img"

    def _artifacts(self) -> Path:
        recipe = {
            "suite": images.SUITE,
            "arch": self.debian_arch,
            "packages": self._packages(),
            "modules": images.MICRO_MODULES,
            "files": images.MICRO_FILES,
        }
        builders = (_build, unpack, stage, pack, images._write_initramfs, images._mmdebstrap)
        build = functools.partial(_build, self)
        key = images._recipe_key(recipe, builders)
        return images._cached(f"micro-{self.debian_arch}", key, build)

    def _packages(self) -> tuple[str, ...]:
        return (self.kernel_package, "busybox-static")


def _build(guest: ForeignMicro, out: Path, scratch: Path) -> None:
    tree = scratch / "tree"
    unpack(guest.debian_arch, guest._packages(), tree, out / "vmlinuz")
    pack(stage(tree, scratch), out / "initrd.img")


def unpack(debian_arch: str, packages: Sequence[str], tree: Path, kernel_out: Path) -> None:
    """The packages of that architecture unpacked into `tree`; its kernel copied out."""
    images._mmdebstrap(
        tree, variant="extract", packages=packages, options=(f"--architectures={debian_arch}",)
    )
    version = images._kernel_version(tree)
    # Debian's ppc64el kernel is an uncompressed ELF `vmlinux`, the others `vmlinuz`.
    (kernel,) = (tree / "boot").glob(f"vmlinu[xz]-{version}")
    shutil.copyfile(kernel, kernel_out)


def stage(tree: Path, scratch: Path) -> Path:
    """The micro guest's initramfs laid out (not packed) from an unpacked tree: its folder."""
    version = images._kernel_version(tree)
    images._run(["depmod", "-b", tree, version])
    modules_dir = tree / "lib/modules" / version
    lines = (modules_dir / "modules.dep").read_text().splitlines()
    known = {
        Path(line.partition(":")[0]).name.removesuffix(".ko").replace("-", "_") for line in lines
    }
    # Some of the x86 list are built into these kernels (or absent, like ACPI's button on
    # POWER); load the rest.
    present = [m for m in images.MICRO_MODULES if m in known]
    modules = images._module_load_order(modules_dir, present)
    host_tree = scratch / "host"
    (host_tree / "bin").mkdir(parents=True)
    shutil.copy2(HOST_BUSYBOX, host_tree / "bin/busybox")
    staging = scratch / "initramfs"
    images._write_initramfs(host_tree, modules_dir, modules, staging, scratch / "host.img")
    shutil.copy2(tree / "bin/busybox", staging / "bin/busybox")
    return staging


def pack(staging: Path, initrd: Path) -> None:
    """The staging folder as a gzip-compressed newc cpio archive."""
    names = sorted(str(p.relative_to(staging)) for p in staging.rglob("*"))
    initrd.write_bytes(gzip.compress(images._cpio(staging, names), compresslevel=6))
