"""Storage pools and volumes: ensure a pool, create, upload, resize and delete our volumes,
and find a pool's file by its path.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, BinaryIO

import libvirt

from vmfleet.drivers.libvirt.connection import POLL_INTERVAL, _Connection, libvirt_message, xml_name
from vmfleet.drivers.libvirt.types import KiB, MiB, PoolInfo, VolumeInfo
from vmfleet.drivers.names import PREFIX as VOLUME_PREFIX
from vmfleet.errors import HypervisorError, NotOwnedError

DEFAULT_POOL_PATH = "/var/lib/libvirt/images"
_UPLOAD_CHUNK = 256 * KiB


class _Storage(_Connection):
    """Pools and volumes; only volumes with our name prefix are changed."""

    def ensure_pool(
        self,
        name: str = "default",
        *,
        path: str = DEFAULT_POOL_PATH,
        define_if_missing: bool = False,
    ) -> PoolInfo:
        """Make a storage pool usable: start it if inactive; define it only when asked.

        A missing pool is defined as a `dir` pool at `path` (directory created, pool started
        and set to autostart) only with `define_if_missing`; otherwise HypervisorError.
        """
        conn = self._connection()
        pool = self._pool_or_none(name)
        if pool is None:
            if not define_if_missing:
                raise HypervisorError(f"storage pool {name!r} does not exist", host=self.name)
            with self._call(f"define storage pool {name!r} at {path}"):
                pool = conn.storagePoolDefineXML(_dir_pool_xml(name=name, path=path), 0)
                pool.build(0)
                pool.setAutostart(1)
        with self._call(f"start storage pool {name!r}"):
            if not pool.isActive():
                pool.create(0)
        return self._pool_info(pool)

    def pool_info(self, name: str, *, refresh: bool = False) -> PoolInfo:
        """Sizes of a pool; `refresh` rescans it first (fails while uploads are running)."""
        pool = self._pool(name)
        if refresh:
            self._refresh_pool(pool, name=name)
        return self._pool_info(pool)

    def _refresh_pool(self, pool: Any, *, name: str, wait: float = 60.0) -> None:
        """Rescan a pool. libvirt refuses while an upload into it runs (another vmfleet run
        on the host): wait for it, up to `wait` s, then report the refusal."""
        deadline = time.monotonic() + wait
        while True:
            try:
                pool.refresh(0)
                return
            except libvirt.libvirtError as err:
                busy = "asynchronous jobs running" in libvirt_message(err)
                if not busy or time.monotonic() > deadline:
                    raise self._error(err, doing=f"refresh storage pool {name!r}") from err
            time.sleep(0.5)

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """Every volume in a pool (ours or not), sorted by name."""
        handle = self._pool(pool)
        with self._call(f"list volumes of pool {pool!r}"):
            volumes = handle.listAllVolumes(0)
        found: list[VolumeInfo] = []
        for vol in volumes:
            try:
                found.append(_volume_info(vol, pool=pool))
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                    continue  # deleted while we listed: it no longer exists
                raise self._error(err, doing=f"read a volume of pool {pool!r}") from err
        return sorted(found, key=lambda v: v.name)

    def get_volume(self, pool: str, name: str) -> VolumeInfo | None:
        """One volume, or None when the pool has no volume of that name."""
        vol = self._volume_or_none(self._pool(pool), pool=pool, name=name)
        if vol is None:
            return None
        with self._call(f"read volume {name!r}"):
            return _volume_info(vol, pool=pool)

    def volume_path(self, pool: str, name: str) -> str:
        """The file (or device) path of a volume; HypervisorError when there is none."""
        vol = self._volume(pool, name)
        with self._call(f"read path of volume {name!r}"):
            return str(vol.path())

    def create_volume(self, pool: str, xml: str) -> VolumeInfo:
        """Create a volume from XML; its name must have our prefix (else ValueError).

        The pool must have room first: the bytes checked are `<allocation>` (which libvirt
        defaults to the capacity) for raw volumes, and only an explicit `<allocation>` for
        formats that grow on demand (qcow2). Too little room → HypervisorError with sizes.
        """
        name = xml_name(xml, kind="volume")
        _require_our_volume_name(name)
        handle = self._pool(pool)
        self._require_space(handle, pool=pool, needed=_volume_bytes_needed(xml), what=name)
        with self._call(f"create volume {name!r} in pool {pool!r}"):
            vol = handle.createXML(xml, 0)
            return _volume_info(vol, pool=pool)

    def upload_volume(
        self, pool: str, name: str, local_path: str | os.PathLike[str], *, format: str
    ) -> VolumeInfo:
        """Copy a local image file into a new volume through a libvirt stream.

        Works for remote hosts too. The volume is created as a raw file of the file's size,
        then its bytes are sent; a dir (or fs) pool then detects the image's own format, which
        must equal `format` (else HypervisorError), so other pool types hold raw images only.
        On any failure the new volume is deleted again and the error raised. Refuses names
        without our prefix (ValueError) and pools without room for the file (HypervisorError
        with sizes).
        """
        _require_our_volume_name(name)
        source = Path(local_path)
        try:
            size = source.stat().st_size
        except OSError as err:
            raise HypervisorError(
                f"upload {source}: cannot read it: {err.strerror or err}", host=self.name
            ) from err
        handle = self._pool(pool)
        self._require_space(handle, pool=pool, needed=size, what=name)
        conn = self._connection()
        with self._call(f"create volume {name!r} in pool {pool!r}"):
            vol = handle.createXML(_upload_volume_xml(name=name, size=size), 0)
        try:
            with self._call(f"upload {source} to volume {name!r}"):
                self._send_file(conn, vol, source, size=size)
            with self._call(f"read uploaded volume {name!r}"):
                info = self._settled_volume_info(vol, pool=pool, want_format=format)
        except BaseException as failure:
            self._delete_after_failure(vol, name=name, failure=failure)
            raise
        return info

    @staticmethod
    def _send_file(conn: Any, vol: Any, source: Path, *, size: int) -> None:
        stream = conn.newStream(0)
        try:
            vol.upload(stream, 0, size, 0)
            with source.open("rb") as data:
                stream.sendAll(_read_chunk, data)
            stream.finish()
        except BaseException:
            # The stream is unusable now; aborting it only frees it, the failure is re-raised.
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            raise

    def _settled_volume_info(self, vol: Any, *, pool: str, want_format: str) -> VolumeInfo:
        # After an upload libvirt refreshes the pool in a background thread; until it has,
        # the volume may still show the raw placeholder it was created as.
        deadline = time.monotonic() + 10.0
        while True:
            vol_info = _volume_info(vol, pool=pool)
            if vol_info.format == want_format:
                return vol_info
            if time.monotonic() >= deadline:
                raise HypervisorError(
                    f"uploaded volume {vol_info.name!r} reads as format {vol_info.format!r}, "
                    f"expected {want_format!r}",
                    host=self.name,
                )
            time.sleep(POLL_INTERVAL)

    def _delete_after_failure(self, vol: Any, *, name: str, failure: BaseException) -> None:
        try:
            vol.delete(0)
        except libvirt.libvirtError as err:
            failure.add_note(
                f"host {self.name}: also failed to delete the partial volume {name!r}: "
                f"{libvirt_message(err)}"
            )

    def create_marker(self, pool: str, name: str, content: bytes) -> bool:
        """Create a small volume holding `content`, atomically: False when a volume of that
        name exists already (libvirt refuses a duplicate name), so only one caller wins.
        Per-fleet locks (`engine.hostlocks`) are such volumes. The bytes go in through a
        stream (remote hosts too); a failed write deletes the volume again and raises."""
        _require_our_volume_name(name)
        handle = self._pool(pool)
        try:
            vol = handle.createXML(_upload_volume_xml(name=name, size=len(content)), 0)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_STORAGE_VOL_EXIST:
                return False
            raise HypervisorError(
                f"create volume {name!r} in pool {pool!r}: {libvirt_message(err)}", host=self.name
            ) from err
        try:
            with self._call(f"write volume {name!r}"):
                stream = self._connection().newStream(0)
                vol.upload(stream, 0, len(content), 0)
                stream.sendAll(lambda _s, n, data: data.read(n), io.BytesIO(content))
                stream.finish()
        except BaseException as failure:
            self._delete_after_failure(vol, name=name, failure=failure)
            raise
        return True

    def read_marker(self, pool: str, name: str, *, limit: int = 65536) -> bytes | None:
        """The bytes of a small volume (at most `limit`); None when it does not exist."""
        vol = self._volume_or_none(self._pool(pool), pool=pool, name=name)
        if vol is None:
            return None
        chunks: list[bytes] = []
        with self._call(f"read volume {name!r}"):
            stream = self._connection().newStream(0)
            vol.download(stream, 0, limit, 0)
            while True:
                chunk = stream.recv(limit)
                if not isinstance(chunk, bytes) or not chunk:
                    break
                chunks.append(chunk)
            stream.finish()
        return b"".join(chunks)[:limit]

    def delete_volume(self, pool: str, name: str) -> bool:
        """Delete one of our volumes; False when it was not there. Others: NotOwnedError."""
        if not name.startswith(VOLUME_PREFIX):
            raise NotOwnedError(
                f"delete volume {name!r}: refused, its name lacks the {VOLUME_PREFIX!r} prefix "
                "(vmfleet did not create it)",
                host=self.name,
            )
        vol = self._volume_or_none(self._pool(pool), pool=pool, name=name)
        if vol is None:
            return False
        with self._call(f"delete volume {name!r} from pool {pool!r}"):
            vol.delete(0)
        return True

    def resize_volume(self, pool: str, name: str, capacity: int) -> VolumeInfo:
        """Grow one of our volumes to `capacity` bytes (libvirt refuses to shrink)."""
        if not name.startswith(VOLUME_PREFIX):
            raise NotOwnedError(
                f"resize volume {name!r}: refused, its name lacks the {VOLUME_PREFIX!r} prefix",
                host=self.name,
            )
        vol = self._volume(pool, name)
        with self._call(f"resize volume {name!r} to {capacity} bytes"):
            vol.resize(capacity, 0)
            return _volume_info(vol, pool=pool)

    def _pool_or_none(self, name: str) -> Any | None:
        conn = self._connection()
        try:
            return conn.storagePoolLookupByName(name)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                return None
            raise self._error(err, doing=f"look up storage pool {name!r}") from err

    def _pool(self, name: str) -> Any:
        pool = self._pool_or_none(name)
        if pool is None:
            raise HypervisorError(f"storage pool {name!r} does not exist", host=self.name)
        return pool

    def _pool_info(self, pool: Any) -> PoolInfo:
        with self._call("read storage pool"):
            name = str(pool.name())
            state, capacity, allocation, available = pool.info()
            root = ET.fromstring(pool.XMLDesc(0))
            autostart = bool(pool.autostart())
        return PoolInfo(
            name=name,
            path=root.findtext("target/path"),
            capacity=int(capacity),
            allocation=int(allocation),
            available=int(available),
            active=state == libvirt.VIR_STORAGE_POOL_RUNNING,
            autostart=autostart,
        )

    def _volume_or_none(self, handle: Any, *, pool: str, name: str) -> Any | None:
        try:
            return handle.storageVolLookupByName(name)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise self._error(err, doing=f"look up volume {name!r} in pool {pool!r}") from err

    def _volume(self, pool: str, name: str) -> Any:
        vol = self._volume_or_none(self._pool(pool), pool=pool, name=name)
        if vol is None:
            raise HypervisorError(f"storage pool {pool!r} has no volume {name!r}", host=self.name)
        return vol

    def _require_space(self, handle: Any, *, pool: str, needed: int, what: str) -> None:
        """HypervisorError with the sizes when the pool has fewer than `needed` bytes free."""
        info = self._pool_info(handle)
        if needed > info.available:
            raise HypervisorError(
                f"storage pool {pool!r} is too full for {what}: it needs {_size_text(needed)}, "
                f"the pool has {_size_text(info.available)} available "
                f"(capacity {_size_text(info.capacity)}, allocated {_size_text(info.allocation)})",
                host=self.name,
            )

    def delete_file_volume(self, path: str, *, vm: str | None = None) -> bool:
        """Delete a file in a pool by its path (a snapshot overlay libvirt wrote there).

        Only files named with our prefix; False when no pool holds it.
        """
        require_our_file(path, host=self.name, vm=vm)
        vol = self._volume_by_path(path, refresh=True)
        if vol is None:
            return False
        with self._call(f"delete {path}", vm=vm):
            vol.delete(0)
        return True

    def _refresh_pools(self, directory: str | None = None) -> None:
        """Let the pools (or the one in `directory`) see files written outside them."""
        conn = self._connection()
        with self._call("list pools"):
            pools = conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
            found = [(p, ET.fromstring(p.XMLDesc(0)).findtext("target/path") or "") for p in pools]
        for pool, where in found:
            if directory is None or where == directory:
                self._refresh_pool(pool, name=where)

    def _volume_by_path(self, path: str, *, refresh: bool) -> Any | None:
        conn = self._connection()
        if refresh:
            self._refresh_pools(str(Path(path).parent))
        try:
            return conn.storageVolLookupByPath(path)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise self._error(err, doing=f"look up volume {path}") from err


def require_our_file(path: str, *, host: str, vm: str | None) -> None:
    if not Path(path).name.startswith(VOLUME_PREFIX):
        raise NotOwnedError(
            f"refused to change {path}: its name lacks the {VOLUME_PREFIX!r} prefix "
            "(vmfleet did not create it)",
            host=host,
            vm=vm,
        )


def _size_text(size: int) -> str:
    """Bytes, with a binary-unit rendering for people: `1048576 bytes (1.0 MiB)`."""
    value, unit = float(size), "bytes"
    for next_unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{size} bytes" if unit == "bytes" else f"{size} bytes ({value:.1f} {unit})"


def _dir_pool_xml(*, name: str, path: str) -> str:
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = name
    ET.SubElement(ET.SubElement(pool, "target"), "path").text = path
    return ET.tostring(pool, encoding="unicode")


def _upload_volume_xml(*, name: str, size: int) -> str:
    # Created as a sparse raw file of the upload's exact size, so the uploaded bytes replace
    # it completely; the dir pool then detects the image format from the bytes themselves.
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(size)
    ET.SubElement(vol, "allocation", unit="bytes").text = "0"
    ET.SubElement(ET.SubElement(vol, "target"), "format", type="raw")
    return ET.tostring(vol, encoding="unicode")


def _read_chunk(_stream: Any, nbytes: int, data: BinaryIO) -> bytes:
    return data.read(min(nbytes, _UPLOAD_CHUNK))


def _require_our_volume_name(name: str) -> None:
    if not name.startswith(VOLUME_PREFIX):
        raise ValueError(f"volume name {name!r} lacks vmfleet's {VOLUME_PREFIX!r} prefix")


_UNITS = {
    "": 1, "b": 1, "bytes": 1,
    "kb": 1000, "k": KiB, "kib": KiB,
    "mb": 1000**2, "m": MiB, "mib": MiB,
    "gb": 1000**3, "g": 1024**3, "gib": 1024**3,
    "tb": 1000**4, "t": 1024**4, "tib": 1024**4,
    "pb": 1000**5, "p": 1024**5, "pib": 1024**5,
    "eb": 1000**6, "e": 1024**6, "eib": 1024**6,
}  # fmt: skip


def _size_bytes(element: ET.Element | None) -> int | None:
    """A libvirt size element in bytes (`unit` defaults to bytes), None when absent."""
    if element is None or element.text is None:
        return None
    unit = element.get("unit", "bytes").lower()
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit {unit!r} in <{element.tag}>")
    return int(element.text.strip()) * _UNITS[unit]


def _volume_bytes_needed(xml: str) -> int:
    root = ET.fromstring(xml)
    capacity = _size_bytes(root.find("capacity")) or 0
    allocation = _size_bytes(root.find("allocation"))
    fmt = root.find("target/format")
    raw = fmt is None or fmt.get("type", "raw") == "raw"
    if allocation is not None:
        return allocation
    return capacity if raw else 0


def _volume_info(vol: Any, *, pool: str) -> VolumeInfo:
    root = ET.fromstring(vol.XMLDesc(0))
    _type, capacity, allocation = vol.info()
    fmt = root.find("target/format")
    return VolumeInfo(
        name=str(vol.name()),
        pool=pool,
        path=str(vol.path()),
        capacity=int(capacity),
        allocation=int(allocation),
        format=None if fmt is None else fmt.get("type"),
        backing_path=root.findtext("backingStore/path"),
    )
