"""The host seam for fast tests on libvirt's `test:///default` driver.

The test driver keeps no volume contents and cannot upload (virStorageVolUpload), resize a
volume (virStorageVolResize) or a running domain's disk (virDomainBlockResize). So
`TestDriverHost` creates an uploaded volume with the file's size and the format the caller
states instead of sending bytes, a resized volume anew at its new size, and grows the volume
behind a disk for a block resize. Everything else is `LibvirtHost` as is.
Pass it as the host factory: `Fleet.open(path, hosts=TestDriverHost.factory)`.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from vmfleet.drivers.domainxml import VolumeSource, parse_domain
from vmfleet.drivers.libvirt import LibvirtHost, VolumeInfo


class TestDriverHost(LibvirtHost):
    __test__ = False  # not a test class, whatever pytest thinks of the name

    @classmethod
    def factory(cls, uri: str, name: str) -> LibvirtHost:
        return cls(uri, name=name)

    def upload_volume(
        self, pool: str, name: str, local_path: str | os.PathLike[str], *, format: str
    ) -> VolumeInfo:
        vol = ET.Element("volume")
        ET.SubElement(vol, "name").text = name
        ET.SubElement(vol, "capacity", unit="bytes").text = str(Path(local_path).stat().st_size)
        ET.SubElement(ET.SubElement(vol, "target"), "format", type=format)
        return self.create_volume(pool, ET.tostring(vol, encoding="unicode"))

    def resize_volume(self, pool: str, name: str, capacity: int) -> VolumeInfo:
        old = self.get_volume(pool, name)
        assert old is not None, f"no volume {name} in {pool}"
        self.delete_volume(pool, name)
        vol = ET.Element("volume")
        ET.SubElement(vol, "name").text = name
        ET.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
        if old.format:
            ET.SubElement(ET.SubElement(vol, "target"), "format", type=old.format)
        return self.create_volume(pool, ET.tostring(vol, encoding="unicode"))

    def block_resize(self, name: str, target: str, capacity: int) -> None:
        for disk in parse_domain(self.domain_xml(name)).disks:
            if disk.target == target and isinstance(disk.source, VolumeSource):
                self.resize_volume(disk.source.pool, disk.source.volume, capacity)
                return
        raise AssertionError(f"{name} has no volume disk {target}")


def join_abandoned_calls(limit: float = 30.0) -> None:
    """Wait for libvirt calls given up on after their deadline (a hung snapshot, say): they
    go on in the background and may still use, or reopen, a test's host connection."""
    deadline = time.monotonic() + limit
    for thread in threading.enumerate():
        if thread.name == "libvirt-deadline":
            thread.join(max(0.0, deadline - time.monotonic()))


def fleet_file(
    tmp_path: Path, vms: str, *, prefix: str, hosts: tuple[str, ...] = ("local",)
) -> Path:
    """A fleet on `test:///default` (each of `hosts` is a name for it) with a 16 MiB qcow2
    base image, whose `vms:` section is `vms` (indented YAML lines); its name is unique,
    from `prefix`."""
    from tests.e2e_support import unique_fleet

    image = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    path = tmp_path / "fleet.yaml"
    lines = "".join(
        f'  {h}: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}\n' for h in hosts
    )
    path.write_text(
        f"fleet: {unique_fleet(prefix)}\n"
        f"hosts:\n{lines}"
        f"images: {{base: {{source: {image}}}}}\n"
        "defaults: {image: base, memory: 64MiB, disk: 16MiB}\n"
        f"vms:\n{vms}\n"
    )
    return path
