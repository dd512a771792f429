"""Storage volume documents: an empty volume or an overlay on a backing store."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from vmfleet.drivers.domainxml.common import ImageFormat, require, sub, tostring


@dataclass(frozen=True, slots=True, kw_only=True)
class BackingStore:
    """The image a copy-on-write volume reads through to (a linked clone's base)."""

    path: str
    format: ImageFormat = "qcow2"


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeConfig:
    """A storage volume; with `backing` it is a qcow2 overlay over that image."""

    name: str
    capacity_bytes: int
    format: ImageFormat = "qcow2"
    backing: BackingStore | None = None

    def __post_init__(self) -> None:
        require(bool(self.name) and "/" not in self.name, f"bad volume name: {self.name!r}")
        require(self.capacity_bytes > 0, "capacity must be positive")
        require(self.backing is None or self.format == "qcow2", "only a qcow2 volume has a backing")

    def to_xml(self) -> str:
        """The volume XML, as `virStorageVolCreateXML` takes it."""
        root = ET.Element("volume", {"type": "file"})
        sub(root, "name", self.name)
        sub(root, "capacity", str(self.capacity_bytes), unit="bytes")
        sub(root, "allocation", "0", unit="bytes")
        target = sub(root, "target")
        sub(target, "format", type=self.format)
        if self.format == "qcow2":
            # libvirt still defaults to qcow2 v2 (compat 0.10); v3 has zero clusters and
            # lazy refcounts, and every QEMU of the last decade reads it.
            sub(target, "compat", "1.1")
        if self.backing is not None:
            backing = sub(root, "backingStore")
            sub(backing, "path", self.backing.path)
            sub(backing, "format", type=self.backing.format)
        return tostring(root)
