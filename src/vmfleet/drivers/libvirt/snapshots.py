"""Domain snapshots: create, list, revert and delete, internal and external.

Internal snapshots live inside the qcow2 disks (with the RAM state of a running domain);
external ones are disk-only overlays: the disk's writes go to a new file from then on.
libvirt 9.0 can neither revert to nor delete an external snapshot; vmfleet does both for
the newest one (see `snapshot_revert` and `snapshot_delete`). Every libvirt call that
can hang (a snapshot, a revert, a block commit) runs in a worker thread with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import libvirt

from vmfleet.drivers.domainxml import SnapshotConfig
from vmfleet.drivers.libvirt.agent import _Agent
from vmfleet.drivers.libvirt.connection import POLL_INTERVAL, call_with_deadline
from vmfleet.drivers.libvirt.storage import require_our_file
from vmfleet.drivers.libvirt.types import STATES, DomainState, SnapshotInfo
from vmfleet.drivers.metadata import NAMESPACE
from vmfleet.drivers.metadata import PREFIX as METADATA_PREFIX
from vmfleet.errors import HypervisorError, OperationTimeout


class _Snapshots(_Agent):
    """Snapshots of our domains, each libvirt call that can hang under a deadline."""

    def snapshot_create(self, name: str, config: SnapshotConfig, *, timeout: float) -> SnapshotInfo:
        """Take a snapshot of our domain; OperationTimeout (naming the VM) after `timeout` s.

        On a timeout the domain is resumed if the call left it paused, and a snapshot that
        libvirt still finishes later is deleted. `VMFLEET_FAULT_SNAPSHOT_DELAY` (seconds, for
        tests) delays the call, to make a hang on purpose.
        """
        dom = self._owned(name, doing="snapshot create")
        was_paused = self._domain_state(dom, name) is DomainState.PAUSED
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        if config.disk_only:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        xml = config.to_xml()
        delay = float(os.environ.get("VMFLEET_FAULT_SNAPSHOT_DELAY", "0") or 0)

        given_up = threading.Event()

        def call() -> Any:
            if delay:
                time.sleep(delay)
            if given_up.is_set():
                return None  # the injected hang ended after the caller gave up
            return dom.snapshotCreateXML(xml, flags)

        def late(snap: Any) -> None:
            # libvirt finished after all: take the internal snapshot away again (an
            # external one has switched the disks to its overlays, so it stays)
            with contextlib.suppress(libvirt.libvirtError):
                if snap is not None and not config.disk_only:
                    snap.delete(0)

        try:
            snap = call_with_deadline(call, timeout=timeout, on_late_result=late)
        except TimeoutError:
            given_up.set()
            note = self._resume_after_timeout(dom, name=name, was_paused=was_paused)
            raise OperationTimeout(
                f"vm {name}: snapshot {config.name!r} did not finish within {timeout:g} s on "
                f"host {self.name}; {note}"
            ) from None
        except libvirt.libvirtError as err:
            raise self._error(err, doing=f"snapshot create {config.name!r}", vm=name) from err
        with self._call("read snapshot", vm=name):
            return _snapshot_info(name, snap, current=True, size=self._snapshot_size(snap))

    def _resume_after_timeout(self, dom: Any, *, name: str, was_paused: bool) -> str:
        with contextlib.suppress(libvirt.libvirtError):
            dom.abortJob()  # a disk-only snapshot's job can be aborted; savevm cannot
        if was_paused:
            return "the VM stays paused, as it was"
        try:
            if self._domain_state(dom, name) is DomainState.PAUSED:
                dom.resume()
                return "the VM was resumed"
        except (libvirt.libvirtError, HypervisorError) as err:
            return f"resuming the VM failed too: {err}"
        return "the VM kept running"

    def _domain_state(self, dom: Any, name: str) -> DomainState:
        with self._call("read state", vm=name):
            code, _reason = dom.state(0)
        return STATES.get(code, DomainState.NOSTATE)

    def list_snapshots(self, name: str) -> list[SnapshotInfo]:
        """A domain's snapshots, oldest first, as libvirt keeps them (any domain)."""
        dom = self._require_domain(name, doing="list snapshots")
        with self._call("list snapshots", vm=name):
            found = [
                _snapshot_info(name, snap, current=bool(snap.isCurrent(0)), size=None)
                for snap in dom.listAllSnapshots(0)
            ]
        if any(s.files for s in found):
            self._refresh_pools()  # libvirt wrote the overlays behind the pools' backs
        ram = self._internal_state_sizes(dom, name=name) if any(s.memory for s in found) else {}
        sized = [
            replace(s, size_bytes=self._files_size(s.files) if s.files else ram.get(s.name))
            for s in found
        ]
        return sorted(sized, key=lambda s: (s.created, s.name))

    def _internal_state_sizes(self, dom: Any, *, name: str) -> dict[str, int]:
        """Bytes of RAM state each internal snapshot keeps in the disks (`qemu-img info`),
        on a local host; empty where that cannot be read (a remote host, no file disks)."""
        if self.remote:
            return {}
        with self._call("read domain XML", vm=name):
            root = ET.fromstring(dom.XMLDesc(0))
        sizes: dict[str, int] = {}
        for disk in root.iterfind("devices/disk"):
            source = disk.find("source")
            path = None if source is None else source.get("file")
            if path is None and source is not None and source.get("pool") and source.get("volume"):
                path = self.volume_path(str(source.get("pool")), str(source.get("volume")))
            if path is None or disk.find("readonly") is not None:
                continue
            done = self._runner.run(["qemu-img", "info", "-U", "--output=json", path], check=False)
            if not done.ok:
                continue  # a disk qemu-img cannot read has no size to show; nothing else
            for snap in json.loads(done.stdout_text()).get("snapshots") or []:
                key = str(snap.get("name"))
                sizes[key] = sizes.get(key, 0) + int(snap.get("vm-state-size") or 0)
        return sizes

    def _snapshot_size(self, snap: Any) -> int | None:
        info = _snapshot_info("", snap, current=True, size=None)
        return self._files_size(info.files) if info.files else None

    def _files_size(self, paths: tuple[str, ...]) -> int | None:
        """Bytes the overlay files take on the host (allocation), None when unreadable."""
        total = 0
        for path in paths:
            vol = self._volume_by_path(path, refresh=False)
            if vol is None:
                return None
            with self._call(f"read volume {path}"):
                total += int(vol.info()[2])
        return total

    def snapshot_revert(
        self, name: str, snapshot: str, *, state: DomainState | None, timeout: float
    ) -> None:
        """Bring our domain back to `snapshot`, then to `state` (running, paused or shutoff;
        None: the state the snapshot recorded).

        An external snapshot can be reverted to only while it is the newest one (its overlays
        are the disks in use): the overlays are emptied again and the domain is started anew
        when `state` is running (a disk-only snapshot holds no RAM).
        """
        dom = self._owned(name, doing="snapshot revert")
        snap = self._snapshot(dom, name=name, snapshot=snapshot)
        with self._call("read snapshot", vm=name):
            info = _snapshot_info(name, snap, current=bool(snap.isCurrent(0)), size=None)
        wanted = state or info.state
        if info.kind == "external":
            self._revert_external(dom, name=name, info=info, snap=snap, state=wanted)
            return
        flags = 0
        if wanted is DomainState.RUNNING:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING
            if not info.memory:
                flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE
        elif wanted is DomainState.PAUSED:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED
        try:
            call_with_deadline(lambda: dom.revertToSnapshot(snap, flags), timeout=timeout)
        except TimeoutError:
            raise OperationTimeout(
                f"vm {name}: revert to snapshot {snapshot!r} did not finish within "
                f"{timeout:g} s on host {self.name}"
            ) from None
        except libvirt.libvirtError as err:
            raise self._error(err, doing=f"revert to snapshot {snapshot!r}", vm=name) from err
        if wanted is DomainState.SHUTOFF and self._is_active(dom, name):
            self._destroy_if_active(dom, name=name)

    def _revert_external(
        self, dom: Any, *, name: str, info: SnapshotInfo, snap: Any, state: DomainState
    ) -> None:
        if not info.current:
            raise HypervisorError(
                f"revert to external snapshot {info.name!r}: only the newest external snapshot "
                "can be reverted to (libvirt 9.0 cannot revert external snapshots; vmfleet "
                "empties the newest overlays); delete the newer snapshots first",
                host=self.name,
                vm=name,
            )
        self._destroy_if_active(dom, name=name)
        for _target, overlay in info.overlays:
            self._recreate_overlay(overlay, backing=self._backing_of(overlay, vm=name), vm=name)
        if state in (DomainState.RUNNING, DomainState.PAUSED):
            flags = libvirt.VIR_DOMAIN_START_PAUSED if state is DomainState.PAUSED else 0
            with self._call("start after revert", vm=name):
                dom.createWithFlags(flags)

    def _backing_of(self, path: str, *, vm: str) -> str:
        """The backing file of an overlay in a pool (the image it was made on top of)."""
        vol = self._volume_by_path(path, refresh=True)
        if vol is None:
            raise HypervisorError(f"overlay {path} is not in any pool", host=self.name, vm=vm)
        with self._call(f"read volume {path}", vm=vm):
            backing = ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path")
        if not backing:
            raise HypervisorError(f"overlay {path} has no backing file", host=self.name, vm=vm)
        return backing

    def _recreate_overlay(self, overlay: str, *, backing: str, vm: str) -> None:
        """Replace `overlay` by an empty qcow2 over `backing` (same name, same pool)."""
        require_our_file(overlay, host=self.name, vm=vm)
        vol = self._volume_by_path(overlay, refresh=True)
        if vol is None:
            raise HypervisorError(f"overlay {overlay} is not in any pool", host=self.name, vm=vm)
        with self._call(f"recreate overlay {overlay}", vm=vm):
            pool = vol.storagePoolLookupByVolume()
            capacity = int(vol.info()[1])
            vol.delete(0)
            pool.createXML(
                _overlay_volume_xml(name=Path(overlay).name, capacity=capacity, backing=backing),
                0,
            )

    def snapshot_delete(self, name: str, snapshot: str, *, timeout: float) -> list[str]:
        """Delete a snapshot and free its space; returns the overlay files removed.

        Internal: libvirt deletes it from the qcow2 disks. External (libvirt 9.0 cannot): each
        overlay is merged into the file below it — a live block commit for an active domain
        (with a pivot when it is the disk in use; libvirt rebases a newer overlay on top),
        `qemu-img commit` on a local host for one that is off (then a newer overlay is
        rebased, or the disk points at the file below again) — and the overlay file goes.
        Newer snapshots stay valid.
        """
        dom = self._owned(name, doing="snapshot delete")
        snap = self._snapshot(dom, name=name, snapshot=snapshot)
        with self._call("read snapshot", vm=name):
            info = _snapshot_info(name, snap, current=bool(snap.isCurrent(0)), size=None)
        if info.kind == "internal":
            try:
                call_with_deadline(lambda: snap.delete(0), timeout=timeout)
            except TimeoutError:
                raise OperationTimeout(
                    f"vm {name}: deleting snapshot {snapshot!r} did not finish within "
                    f"{timeout:g} s on host {self.name}"
                ) from None
            except libvirt.libvirtError as err:
                raise self._error(err, doing=f"delete snapshot {snapshot!r}", vm=name) from err
            return []
        active = self._active_disk_files(dom, name=name)
        for target, overlay in info.overlays:
            require_our_file(overlay, host=self.name, vm=name)
            backing = self._backing_of(overlay, vm=name)
            is_active = active.get(target) == overlay
            if self._is_active(dom, name):
                self._commit_live(
                    dom, name=name, target=target, top=overlay, active=is_active, timeout=timeout
                )
            elif is_active:
                self._qemu_img(["commit", "-q", overlay], vm=name)
                self._point_disk_at(dom, name=name, target=target, path=backing)
            else:
                self._qemu_img(["commit", "-q", overlay], vm=name)
                for child in self._children_of(overlay, vm=name):
                    self._qemu_img(["rebase", "-u", "-F", "qcow2", "-b", backing, child], vm=name)
        with self._call(f"delete snapshot {snapshot!r} metadata", vm=name):
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        return [path for _t, path in info.overlays if self.delete_file_volume(path, vm=name)]

    def _active_disk_files(self, dom: Any, *, name: str) -> dict[str, str]:
        """Disk target -> the file it writes to now (file-backed disks only)."""
        with self._call("read domain XML", vm=name):
            root = ET.fromstring(dom.XMLDesc(0))
        found = {}
        for disk in root.iterfind("devices/disk"):
            target, source = disk.find("target"), disk.find("source")
            if target is not None and source is not None and source.get("file"):
                found[str(target.get("dev"))] = str(source.get("file"))
        return found

    def _children_of(self, overlay: str, *, vm: str) -> list[str]:
        """The other snapshot overlays that use `overlay` as their backing file."""
        return [
            path
            for info in self.list_snapshots(vm)
            for path in info.files
            if path != overlay and self._backing_of(path, vm=vm) == overlay
        ]

    def _commit_live(
        self, dom: Any, *, name: str, target: str, top: str, active: bool, timeout: float
    ) -> None:
        """Merge an overlay of a running disk into its backing file (and pivot when it is the
        active layer); libvirt rebases whatever sat on top of it."""
        flags = libvirt.VIR_DOMAIN_BLOCK_COMMIT_SHALLOW
        if active:
            flags |= libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE
        with self._call(f"block commit {target}", vm=name):
            dom.blockCommit(target, None, None if active else top, 0, flags)
        deadline = time.monotonic() + timeout
        while True:
            with self._call(f"block job {target}", vm=name):
                job = dom.blockJobInfo(target, 0)
            if not job and not active:
                return  # a non-active commit ends by itself
            if active and job and job.get("end", 0) and job.get("cur") == job.get("end"):
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.blockJobAbort(target, 0)
                raise OperationTimeout(
                    f"vm {name}: block commit of {target} did not finish within {timeout:g} s "
                    f"on host {self.name}; it was cancelled, the snapshot is kept"
                )
            time.sleep(POLL_INTERVAL)
        with self._call(f"pivot {target}", vm=name):
            dom.blockJobAbort(target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
        while time.monotonic() < deadline:  # the pivot finishes asynchronously
            with self._call(f"block job {target}", vm=name):
                if not dom.blockJobInfo(target, 0):
                    return
            time.sleep(POLL_INTERVAL)

    def _qemu_img(self, args: list[str], *, vm: str) -> None:
        """qemu-img on this machine, for changes to the disks of a domain that is off."""
        if self.remote:
            raise HypervisorError(
                f"qemu-img {args[0]} is needed while the VM is off, and the host is remote; "
                "start the VM and try again (libvirt then does it live)",
                host=self.name,
                vm=vm,
            )
        done = self._runner.run(["qemu-img", *args], check=False)
        if not done.ok:
            raise HypervisorError(
                f"qemu-img {' '.join(args)}: {done.stderr_text().strip()}", host=self.name, vm=vm
            )

    def _point_disk_at(self, dom: Any, *, name: str, target: str, path: str) -> None:
        """Redefine the (shut off) domain with disk `target` reading and writing `path`."""
        with self._call("read domain XML", vm=name):
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        root = ET.fromstring(xml)
        for disk in root.iterfind("devices/disk"):
            if disk.find(f"target[@dev='{target}']") is None:
                continue
            disk.set("type", "file")
            for old in [*disk.findall("source"), *disk.findall("backingStore")]:
                disk.remove(old)
            position = 1 if disk.find("driver") is not None else 0
            disk.insert(position, ET.Element("source", file=path))
        ET.register_namespace(METADATA_PREFIX, NAMESPACE)
        with self._call("redefine after commit", vm=name):
            self._connection().defineXML(ET.tostring(root, encoding="unicode"))

    def _snapshot(self, dom: Any, *, name: str, snapshot: str) -> Any:
        try:
            return dom.snapshotLookupByName(snapshot, 0)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                raise HypervisorError(f"no snapshot {snapshot!r}", host=self.name, vm=name) from err
            raise self._error(err, doing=f"look up snapshot {snapshot!r}", vm=name) from err

    def snapshot_files(self, name: str) -> list[str]:
        """Every overlay file the domain's external snapshots made (for removing the VM)."""
        files: list[str] = []
        for info in self.list_snapshots(name):
            files += [path for path in info.files if path not in files]
        return files


_DISK_SNAPSHOT_STATE = re.compile(r"\bstate=(running|paused|shutoff)\b")


def _snapshot_info(vm: str, snap: Any, *, current: bool, size: int | None) -> SnapshotInfo:
    root = ET.fromstring(snap.getXMLDesc(0))
    description = root.findtext("description")
    raw_state = root.findtext("state") or "nostate"
    if raw_state == "disk-snapshot":
        noted = _DISK_SNAPSHOT_STATE.search(description or "")
        raw_state = noted.group(1) if noted else "running"
    try:
        state = DomainState(raw_state)
    except ValueError:
        state = DomainState.NOSTATE
    overlays = tuple(
        (str(disk.get("name")), str(source.get("file")))
        for disk in root.iterfind("disks/disk")
        if disk.get("snapshot") == "external"
        and (source := disk.find("source")) is not None
        and source.get("file")
    )
    memory = root.find("memory")
    return SnapshotInfo(
        vm=vm,
        name=root.findtext("name") or "",
        created=datetime.fromtimestamp(int(root.findtext("creationTime") or 0), tz=UTC),
        state=state,
        parent=root.findtext("parent/name"),
        current=current,
        kind="external" if overlays else "internal",
        memory=memory is not None and memory.get("snapshot") == "internal",
        description=description,
        overlays=overlays,
        size_bytes=size,
    )


def _overlay_volume_xml(*, name: str, capacity: int, backing: str) -> str:
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
    ET.SubElement(ET.SubElement(vol, "target"), "format", type="qcow2")
    store = ET.SubElement(vol, "backingStore")
    ET.SubElement(store, "path").text = backing
    ET.SubElement(store, "format", type="qcow2")
    return ET.tostring(vol, encoding="unicode")
