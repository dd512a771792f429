"""Snapshot documents: internal or external (disk-only overlays), with per-disk choices."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal

from vmfleet.drivers.domainxml.common import ImageFormat, require, sub, tostring


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotDisk:
    """How one disk takes part in a snapshot; `external` writes new writes to `file`."""

    target: str
    mode: Literal["internal", "external", "no"] = "external"
    file: str | None = None
    format: ImageFormat = "qcow2"

    def __post_init__(self) -> None:
        require(
            (self.mode == "external") == (self.file is not None),
            f"{self.target}: an external snapshot disk (and only it) needs a file",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotConfig:
    """A domain snapshot.

    With no `disks`, libvirt's default: an internal snapshot of every disk, with the RAM
    state when `memory` (a running domain) or without (shut off). With `disks` naming any
    `external` disk it is a disk-only external snapshot (`memory` must be False): pass
    `VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY` when `disk_only` says so.
    """

    name: str
    description: str | None = None
    memory: bool = False
    disks: tuple[SnapshotDisk, ...] = ()

    def __post_init__(self) -> None:
        require(bool(self.name) and "/" not in self.name, f"bad snapshot name: {self.name!r}")
        require(
            not (self.memory and self.disk_only),
            "external snapshots with memory state are not supported",
        )

    @property
    def disk_only(self) -> bool:
        """True when the snapshot must be created with the DISK_ONLY flag."""
        return any(disk.mode == "external" for disk in self.disks)

    def to_xml(self) -> str:
        """The domainsnapshot XML, as `virDomainSnapshotCreateXML` takes it."""
        root = ET.Element("domainsnapshot")
        sub(root, "name", self.name)
        if self.description is not None:
            sub(root, "description", self.description)
        sub(root, "memory", snapshot="internal" if self.memory else "no")
        if self.disks:
            disks = sub(root, "disks")
            for disk in self.disks:
                element = sub(disks, "disk", name=disk.target, snapshot=disk.mode)
                if disk.file is not None:
                    sub(element, "driver", type=disk.format)
                    sub(element, "source", file=disk.file)
        return tostring(root)
