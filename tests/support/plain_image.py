"""A Debian 12 guest without cloud-init, for image preparation's `setup` (vmfleet writes the
login user, its key and the hostname into the image instead of a NoCloud seed).

Built like ``images.debian_image()`` (same packages minus cloud-init and growpart, same disk
layout, kernel and console) and cached the same way; systemd-networkd takes DHCP on any NIC.
It has no SSH host keys and no login user: an image nobody prepared has no working sshd,
which is what the e2e test of `prepare.setup` needs to show that setup made it work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import images

PLAIN_PACKAGES = tuple(
    p for p in images.DEBIAN_PACKAGES if p not in ("cloud-init", "cloud-guest-utils")
)
PLAIN_NETWORK = (
    "etc/systemd/network/80-dhcp.network",
    "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n",
)


def debian_plain_image() -> Path:
    """A bootable Debian 12 guest without cloud-init: qcow2, 2 GiB virtual, MBR, DHCP on
    every NIC through systemd-networkd, openssh-server without host keys, no login user."""
    recipe = {
        "suite": images.SUITE,
        "packages": PLAIN_PACKAGES,
        "dpkg_options": images.DEBIAN_DPKG_OPTIONS,
        "files": images.DEBIAN_FILES,
        "network": PLAIN_NETWORK,
        "removed": images.DEBIAN_REMOVED,
        "units": images.DEBIAN_ENABLED_UNITS,
        "disk_bytes": images.DEBIAN_DISK_BYTES,
    }
    builders = (
        _build,
        images._configure_debian_tree,
        images._make_bootable_disk,
        images._mmdebstrap,
    )
    key = images._recipe_key(recipe, builders)
    return images._cached("debian-plain", key, _build) / "debian-12-plain.qcow2"


def _build(out: Path, scratch: Path) -> None:
    tree = scratch / "tree"
    images._mmdebstrap(
        tree,
        variant="minbase",
        packages=PLAIN_PACKAGES,
        options=[f"--dpkgopt={option}" for option in images.DEBIAN_DPKG_OPTIONS],
    )
    images._configure_debian_tree(tree)
    shutil.rmtree(tree / "etc/cloud")  # the NoCloud settings written for the cloud image
    relative, content = PLAIN_NETWORK
    (tree / relative).parent.mkdir(parents=True, exist_ok=True)
    (tree / relative).write_text(content)
    raw = scratch / "disk.raw"
    images._make_bootable_disk(tree, raw, scratch / "mnt")
    shutil.rmtree(tree)
    images._run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out / "debian-12-plain.qcow2"]
    )
