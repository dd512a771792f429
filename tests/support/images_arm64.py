"""The arm64 micro guest: the x86 micro guest's recipe (``images.MICRO_FILES``: DHCP on eth0,
an SSH banner on port 22, ``vmfleet-micro: ready`` on the console) with Debian's arm64 cloud
kernel and busybox, for direct kernel boot under ``qemu-system-aarch64`` (TCG) on the `virt`
machine. Boot it with :data:`ARM64_CMDLINE` (the PL011 UART is ttyAMA0).

Packages come from the host's Debian mirror through ``mmdebstrap --architectures=arm64`` (no
change to the host's dpkg architectures). The arm64 busybox cannot run here to list its
applets, so the initramfs is laid out with the host's busybox-static (same Debian release,
same applets) and the arm64 binary is swapped in before it is packed.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from tests.support import images

ARM64_PACKAGES = ("linux-image-cloud-arm64", "busybox-static")
ARM64_CMDLINE = "console=ttyAMA0"
HOST_BUSYBOX = Path("/bin/busybox")


def arm64_kernel() -> Path:
    """The Debian arm64 cloud kernel (a gzip-compressed Image; QEMU unpacks it)."""
    return _artifacts() / "vmlinuz"


def arm64_initrd() -> Path:
    """The busybox initramfs for :func:`arm64_kernel`, as :func:`images.micro_initrd`."""
    return _artifacts() / "initrd.img"


def _artifacts() -> Path:
    recipe = {
        "suite": images.SUITE,
        "packages": ARM64_PACKAGES,
        "modules": images.MICRO_MODULES,
        "files": images.MICRO_FILES,
    }
    builders = (_build, images._write_initramfs, images._mmdebstrap)
    return images._cached("micro-arm64", images._recipe_key(recipe, builders), _build)


def _build(out: Path, scratch: Path) -> None:
    tree = scratch / "tree"
    images._mmdebstrap(
        tree, variant="extract", packages=ARM64_PACKAGES, options=("--architectures=arm64",)
    )
    version = images._kernel_version(tree)
    shutil.copyfile(tree / f"boot/vmlinuz-{version}", out / "vmlinuz")
    images._run(["depmod", "-b", tree, version])
    modules_dir = tree / "lib/modules" / version
    lines = (modules_dir / "modules.dep").read_text().splitlines()
    known = {
        Path(line.partition(":")[0]).name.removesuffix(".ko").replace("-", "_") for line in lines
    }
    # Some of the x86 list are built into the arm64 kernel; load the rest.
    present = [m for m in images.MICRO_MODULES if m in known]
    modules = images._module_load_order(modules_dir, present)
    host_tree = scratch / "host"
    (host_tree / "bin").mkdir(parents=True)
    shutil.copy2(HOST_BUSYBOX, host_tree / "bin/busybox")
    staging = scratch / "initramfs"
    images._write_initramfs(host_tree, modules_dir, modules, staging, out / "initrd.img")
    shutil.copy2(tree / "bin/busybox", staging / "bin/busybox")
    names = sorted(str(p.relative_to(staging)) for p in staging.rglob("*"))
    (out / "initrd.img").write_bytes(gzip.compress(images._cpio(staging, names), compresslevel=6))


if __name__ == "__main__":
    print(arm64_kernel(), arm64_initrd())
