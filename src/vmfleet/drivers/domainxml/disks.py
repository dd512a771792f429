"""Disks of a domain: their sources (pool volume or file) and `<disk>`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from vmfleet.drivers.domainxml.common import (
    TARGET_RE,
    DiskBus,
    DiskCache,
    DiskDevice,
    DiskDiscard,
    DiskIo,
    ImageFormat,
    require,
    sub,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeSource:
    """A disk backed by a storage pool volume (`<disk type='volume'>`)."""

    pool: str
    volume: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSource:
    """A disk backed by a file on the host (`<disk type='file'>`)."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockSource(FileSource):
    """A disk on a host block device at `path` (`<disk type='block'>`), e.g. a DRBD device."""


DiskSource = VolumeSource | FileSource


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskConfig:
    """One disk or CD-ROM of a domain.

    `source` None is an empty CD-ROM drive. A CD-ROM is always read-only and cannot sit on
    the virtio bus (use `sata` on q35, `ide` on pc). `io='native'` needs `cache` `none` or
    `directsync`. `boot_order` (1 = first) sets per-device boot order; when any device has
    one, the domain gets no `<boot dev>`.
    """

    target: str
    source: DiskSource | None
    bus: DiskBus = "virtio"
    device: DiskDevice = "disk"
    format: ImageFormat = "qcow2"
    readonly: bool = False
    cache: DiskCache | None = None
    io: DiskIo | None = None
    discard: DiskDiscard | None = None
    boot_order: int | None = None
    serial: str | None = None

    def __post_init__(self) -> None:
        require(bool(TARGET_RE.match(self.target)), f"bad disk target: {self.target!r}")
        if self.device == "cdrom":
            require(self.bus != "virtio", f"{self.target}: a cdrom cannot be on the virtio bus")
        else:
            require(self.source is not None, f"{self.target}: a disk needs a source")
        if self.io == "native":
            require(
                self.cache in ("none", "directsync"),
                f"{self.target}: io='native' needs cache 'none' or 'directsync'",
            )
        require(self.boot_order is None or self.boot_order >= 1, "boot_order starts at 1")

    def to_element(self) -> ET.Element:
        """The `<disk>` element."""
        kind = (
            "volume"
            if isinstance(self.source, VolumeSource)
            else "block"
            if isinstance(self.source, BlockSource)
            else "file"
        )
        disk = ET.Element("disk", {"type": kind, "device": self.device})
        sub(
            disk,
            "driver",
            name="qemu",
            type=self.format,
            cache=self.cache,
            io=self.io,
            discard=self.discard,
        )
        if isinstance(self.source, VolumeSource):
            sub(disk, "source", pool=self.source.pool, volume=self.source.volume)
        elif isinstance(self.source, BlockSource):
            sub(disk, "source", dev=self.source.path)
        elif isinstance(self.source, FileSource):
            sub(disk, "source", file=self.source.path)
        sub(disk, "target", dev=self.target, bus=self.bus)
        if self.readonly or self.device == "cdrom":
            sub(disk, "readonly")
        if self.serial is not None:
            sub(disk, "serial", self.serial)
        if self.boot_order is not None:
            sub(disk, "boot", order=str(self.boot_order))
        return disk
