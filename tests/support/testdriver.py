"""libvirt's test driver as a host, with the two calls it lacks done the way they end.

`test:///default` keeps domains, pools and volumes in memory but cannot upload a volume,
resize one, or resize a running domain's disk. This host creates the uploaded volume at the
file's size and a resized one anew at its new size (the test driver keeps no bytes either
way), and grows the volume behind a disk for a block resize; everything else is libvirt's
own test driver. Hand `host_factory` to a `FleetContext`.
"""

from __future__ import annotations

import os
from pathlib import Path

from vmfleet.drivers.domainxml import VolumeSource, parse_domain
from vmfleet.drivers.libvirt import LibvirtHost, VolumeInfo


class TestDriverHost(LibvirtHost):
    __test__ = False  # not a pytest class

    def upload_volume(
        self, pool: str, name: str, local_path: str | os.PathLike[str], *, format: str
    ) -> VolumeInfo:
        size = Path(local_path).stat().st_size
        handle = self._pool(pool)
        with self._call(f"create volume {name!r} in pool {pool!r}"):
            handle.createXML(_volume_xml(name, size), 0)
        info = self.get_volume(pool, name)
        assert info is not None
        return info

    def resize_volume(self, pool: str, name: str, capacity: int) -> VolumeInfo:
        self.delete_volume(pool, name)
        with self._call(f"create volume {name!r} in pool {pool!r}"):
            self._pool(pool).createXML(_volume_xml(name, capacity), 0)
        info = self.get_volume(pool, name)
        assert info is not None
        return info

    def block_resize(self, name: str, target: str, capacity: int) -> None:
        for disk in parse_domain(self.domain_xml(name)).disks:
            if disk.target == target and isinstance(disk.source, VolumeSource):
                self.resize_volume(disk.source.pool, disk.source.volume, capacity)
                return
        raise AssertionError(f"{name} has no volume disk {target}")


def _volume_xml(name: str, capacity: int) -> str:
    return f"<volume><name>{name}</name><capacity>{capacity}</capacity></volume>"


def host_factory(uri: str, name: str) -> LibvirtHost:
    return TestDriverHost(uri, name=name)
