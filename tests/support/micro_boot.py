"""The micro guest on a disk that boots it, for tools that cannot boot a kernel directly.

``micro_boot_disk()``: a small qcow2 (MBR, one ext4 partition, extlinux) holding
``images.micro_kernel()`` and ``images.micro_initrd()``; extlinux boots them with
:data:`MICRO_BOOT_CMDLINE`, so the guest is the same busybox guest as with direct kernel boot
(DHCP on eth0, an SSH banner on TCP 22, ``vmfleet-micro: ready`` on ttyS0). Nothing on the
disk is mounted at run time: the initramfs is the whole system. Built with the pieces of the
Debian image (``images._make_bootable_disk``) and cached the same way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import images

MICRO_BOOT_DISK_BYTES = 32 << 20
MICRO_BOOT_LABEL = "vmfmicroboot"
# As vmfleet's micro fleets boot the kernel directly (no_timer_check: see e2e_support).
MICRO_BOOT_CMDLINE = "console=ttyS0 no_timer_check"
MICRO_BOOT_EXTLINUX = (
    "SERIAL 0 115200\n"  # syslinux's own messages on ttyS0 too
    "DEFAULT micro\n"
    "PROMPT 0\n"
    "TIMEOUT 0\n"
    "LABEL micro\n"
    "  LINUX /boot/vmlinuz\n"
    "  INITRD /boot/initrd.img\n"
    f"  APPEND {MICRO_BOOT_CMDLINE}\n"
)


def micro_boot_disk() -> Path:
    """A 32 MiB qcow2 that boots the micro guest from its MBR (extlinux)."""
    recipe = {
        "micro": images.micro_kernel().parent.name,  # the micro guest's recipe hash
        "disk_bytes": MICRO_BOOT_DISK_BYTES,
        "label": MICRO_BOOT_LABEL,
        "extlinux": MICRO_BOOT_EXTLINUX,
    }
    key = images._recipe_key(recipe, (_build, images._make_bootable_disk))
    return images._cached("micro-boot", key, _build) / "micro-boot.qcow2"


def _build(out: Path, scratch: Path) -> None:
    tree = scratch / "tree"
    (tree / "boot/extlinux").mkdir(parents=True)
    shutil.copyfile(images.micro_kernel(), tree / "boot/vmlinuz")
    shutil.copyfile(images.micro_initrd(), tree / "boot/initrd.img")
    (tree / "boot/extlinux/extlinux.conf").write_text(MICRO_BOOT_EXTLINUX)
    raw = scratch / "disk.raw"
    images._make_bootable_disk(
        tree, raw, scratch / "mnt", disk_bytes=MICRO_BOOT_DISK_BYTES, label=MICRO_BOOT_LABEL
    )
    images._run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out / "micro-boot.qcow2"])
