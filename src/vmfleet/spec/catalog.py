"""Known cloud images: where each publisher keeps its stable ("latest") image and the checksum
list beside it, for amd64 and arm64, and the login user its cloud-init config creates.

`images: {debian: {catalog: debian-12}}` takes the URL from here; the digest is read from the
publisher's checksum list when the image is pulled (see `engine.catalog`). Every URL can be
served from a mirror: with `VMFLEET_CATALOG_MIRROR=http://mirror/base`, `https://host/path`
is fetched as `http://mirror/base/host/path`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

MIRROR_ENV = "VMFLEET_CATALOG_MIRROR"
Arch = Literal["x86_64", "aarch64"]


@dataclass(frozen=True, slots=True)
class CatalogImage:
    """One image of the catalog for one architecture."""

    name: str
    description: str
    arch: Arch
    url: str
    checksums: str
    user: str

    @property
    def file(self) -> str:
        """The image's file name, as the checksum list names it."""
        return self.url.rsplit("/", 1)[-1]


def _pair(
    name: str, description: str, user: str, amd64: tuple[str, str], arm64: tuple[str, str] | None
) -> list[CatalogImage]:
    out = [CatalogImage(name, description, "x86_64", amd64[0], amd64[1], user)]
    if arm64 is not None:
        out.append(CatalogImage(name, description, "aarch64", arm64[0], arm64[1], user))
    return out


def _debian_style(
    name: str, description: str, user: str, base: str, file: str, sums: str
) -> list[CatalogImage]:
    """A publisher whose folder holds both architectures (`{arch}` is amd64/arm64) and one
    checksum list for all of them."""
    amd64, arm64 = (f"{base}/{file.format(arch=arch)}" for arch in ("amd64", "arm64"))
    return _pair(name, description, user, (amd64, f"{base}/{sums}"), (arm64, f"{base}/{sums}"))


def _debian(version: int, codename: str) -> list[CatalogImage]:
    return _debian_style(
        f"debian-{version}",
        f"Debian {version} ({codename}) generic cloud image",
        "debian",
        f"https://cloud.debian.org/images/cloud/{codename}/latest",
        f"debian-{version}-generic-{{arch}}.qcow2",
        "SHA512SUMS",
    )


def _ubuntu(version: str, codename: str) -> list[CatalogImage]:
    return _debian_style(
        f"ubuntu-{version}",
        f"Ubuntu {version} LTS ({codename}) server cloud image",
        "ubuntu",
        f"https://cloud-images.ubuntu.com/releases/{codename}/release",
        f"ubuntu-{version}-server-cloudimg-{{arch}}.img",
        "SHA256SUMS",
    )


def _fedora(version: int, build: str) -> list[CatalogImage]:
    base = f"https://download.fedoraproject.org/pub/fedora/linux/releases/{version}/Cloud"

    def one(arch: str) -> tuple[str, str]:
        folder = f"{base}/{arch}/images"
        return (
            f"{folder}/Fedora-Cloud-Base-Generic-{version}-{build}.{arch}.qcow2",
            f"{folder}/Fedora-Cloud-{version}-{build}-{arch}-CHECKSUM",
        )

    return _pair(
        f"fedora-{version}", f"Fedora {version} Cloud Base", "fedora", one("x86_64"), one("aarch64")
    )


def _el(name: str, title: str, user: str, folder: str, file: str) -> list[CatalogImage]:
    def one(arch: str) -> tuple[str, str]:
        where = folder.format(arch=arch)
        return f"{where}/{file.format(arch=arch)}", f"{where}/CHECKSUM"

    return _pair(name, title, user, one("x86_64"), one("aarch64"))


_LEAP = "https://download.opensuse.org/distribution/leap/15.6/appliances"
_ARCH = "https://geo.mirror.pkgbuild.com/images/latest"

IMAGES: tuple[CatalogImage, ...] = (
    *_debian(12, "bookworm"),
    *_debian(13, "trixie"),
    *_ubuntu("22.04", "jammy"),
    *_ubuntu("24.04", "noble"),
    *_fedora(42, "1.1"),
    *_el(
        "almalinux-9",
        "AlmaLinux 9 GenericCloud",
        "almalinux",
        "https://repo.almalinux.org/almalinux/9/cloud/{arch}/images",
        "AlmaLinux-9-GenericCloud-latest.{arch}.qcow2",
    ),
    *_el(
        "rocky-9",
        "Rocky Linux 9 GenericCloud Base",
        "rocky",
        "https://dl.rockylinux.org/pub/rocky/9/images/{arch}",
        "Rocky-9-GenericCloud-Base.latest.{arch}.qcow2",
    ),
    *_pair(
        "arch",
        "Arch Linux cloud image (rolling)",
        "arch",
        (
            f"{_ARCH}/Arch-Linux-x86_64-cloudimg.qcow2",
            f"{_ARCH}/Arch-Linux-x86_64-cloudimg.qcow2.SHA256",
        ),
        None,
    ),
    *_pair(
        "opensuse-leap-15.6",
        "openSUSE Leap 15.6 Minimal VM (Cloud)",
        "opensuse",
        (
            f"{_LEAP}/openSUSE-Leap-15.6-Minimal-VM.x86_64-Cloud.qcow2",
            f"{_LEAP}/openSUSE-Leap-15.6-Minimal-VM.x86_64-Cloud.qcow2.sha256",
        ),
        (
            f"{_LEAP}/openSUSE-Leap-15.6-Minimal-VM.aarch64-Cloud.qcow2",
            f"{_LEAP}/openSUSE-Leap-15.6-Minimal-VM.aarch64-Cloud.qcow2.sha256",
        ),
    ),
)

NAMES = tuple(dict.fromkeys(image.name for image in IMAGES))


def find(name: str, arch: str) -> CatalogImage | None:
    """The catalog entry for `name` on `arch`, or None."""
    return next((i for i in IMAGES if i.name == name and i.arch == arch), None)


def mirrored(url: str, mirror: str | None = None) -> str:
    """`url` as fetched through the mirror in $VMFLEET_CATALOG_MIRROR (unchanged without)."""
    base = mirror if mirror is not None else os.environ.get(MIRROR_ENV, "")
    if not base:
        return url
    return f"{base.rstrip('/')}/{url.split('://', 1)[1]}"


_BSD = re.compile(r"^(SHA256|SHA512) \((?P<file>[^)]+)\) = (?P<hex>[0-9a-fA-F]+)$")
_GNU = re.compile(r"^(?P<hex>[0-9a-fA-F]{64}|[0-9a-fA-F]{128})\s+\*?(?P<file>\S+)$")


def digest_for(text: str, file: str) -> tuple[str, str] | None:
    """(algorithm, hex digest) of `file` in a publisher's checksum list, or None.

    Reads both forms publishers use: GNU `HEX  FILE` / `HEX *FILE` (Debian's SHA512SUMS,
    Ubuntu's SHA256SUMS, Arch's and openSUSE's single-line files) and BSD
    `SHA256 (FILE) = HEX` (Fedora, Rocky and AlmaLinux CHECKSUM files, whose PGP armour
    lines are skipped). The algorithm follows from the digest's length.
    """
    for line in text.splitlines():
        line = line.strip()
        match = _BSD.match(line) or _GNU.match(line)
        if match and match["file"].rsplit("/", 1)[-1] == file:
            hexdigest = match["hex"].lower()
            algorithm = {64: "sha256", 128: "sha512"}.get(len(hexdigest))
            if algorithm:
                return algorithm, hexdigest
    return None
