"""Domains: read them (info, XML, uptime) and change ours (define, power, resources)."""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import libvirt

from vmfleet.drivers import names
from vmfleet.drivers.libvirt.connection import POLL_INTERVAL, xml_name
from vmfleet.drivers.libvirt.networks import _Networks
from vmfleet.drivers.libvirt.types import STATES, DomainInfo, DomainState, KiB, ShutdownResult
from vmfleet.drivers.metadata import NAMESPACE, OwnerMetadata
from vmfleet.drivers.metadata import PREFIX as METADATA_PREFIX
from vmfleet.errors import HypervisorError, NotOwnedError, OperationTimeout


class _Domains(_Networks):
    """Domains; a change needs our metadata on the domain first (`_owned`)."""

    def list_domains(self, *, fleet: str | None = None) -> list[DomainInfo]:
        """Every domain on the host, sorted by name; with `fleet`, only that fleet's own.

        A domain that disappears while being listed is left out (it no longer exists).
        """
        conn = self._connection()
        with self._call("list domains"):
            domains = conn.listAllDomains(0)
        found: list[DomainInfo] = []
        for dom in domains:
            info = self._domain_info_or_none(dom)
            if info is None:
                continue
            if fleet is not None and (info.owner is None or info.owner.fleet != fleet):
                continue
            found.append(info)
        return sorted(found, key=lambda d: d.name)

    def get_domain(self, name: str) -> DomainInfo | None:
        """One domain by name, or None when there is none of that name."""
        dom = self._lookup(name)
        return None if dom is None else self._domain_info_or_none(dom)

    def domain_xml(self, name: str, *, inactive: bool = False) -> str:
        """The domain's XML (live, or the persistent config with `inactive`); any domain."""
        dom = self._require_domain(name, doing="read domain XML")
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        with self._call("read domain XML", vm=name):
            return str(dom.XMLDesc(flags))

    def _lookup(self, name: str) -> Any | None:
        conn = self._connection()
        try:
            return conn.lookupByName(name)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise self._error(err, doing="look up domain", vm=name) from err

    def _require_domain(self, name: str, *, doing: str) -> Any:
        dom = self._lookup(name)
        if dom is None:
            raise HypervisorError(f"{doing}: no such domain", host=self.name, vm=name)
        return dom

    def _owned(self, name: str, *, doing: str) -> Any:
        """The domain, after checking it is ours; NotOwnedError (or no such domain) else."""
        dom = self._require_domain(name, doing=doing)
        with self._call(doing, vm=name):
            xml = dom.XMLDesc(0)
        if OwnerMetadata.from_domain_xml(xml) is None:
            raise NotOwnedError(
                f"{doing}: refused, the domain has no vmfleet metadata (vmfleet did not create it)",
                host=self.name,
                vm=name,
            )
        return dom

    def _domain_info_or_none(self, dom: Any) -> DomainInfo | None:
        try:
            return self._domain_info(dom)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None  # removed between listing and reading: it no longer exists
            raise self._error(err, doing="read domain", vm=_safe_name(dom)) from err

    def _domain_info(self, dom: Any) -> DomainInfo:
        name = str(dom.name())
        xml = dom.XMLDesc(0)
        root = ET.fromstring(xml)
        persistent = bool(dom.isPersistent())
        state_code, max_kib, mem_kib, vcpus, _cpu_time = dom.info()
        state = STATES.get(state_code, DomainState.NOSTATE)
        max_vcpus = int(root.findtext("vcpu") or vcpus)
        uptime = None
        owner = OwnerMetadata.from_domain_xml(xml)
        config_owner = None
        if state in (DomainState.RUNNING, DomainState.PAUSED, DomainState.BLOCKED):
            uptime = self._local_qemu_uptime(name)
            if owner is not None and persistent:
                inactive = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                defined = OwnerMetadata.from_domain_xml(inactive)
                config_owner = defined if defined != owner else None
        return DomainInfo(
            name=name,
            uuid=str(dom.UUIDString()),
            state=state,
            owner=owner,
            vcpus=int(vcpus),
            max_vcpus=max_vcpus,
            memory_bytes=int(mem_kib) * KiB,
            max_memory_bytes=int(max_kib) * KiB,
            autostart=bool(dom.autostart()) if persistent else False,
            persistent=persistent,
            uptime_seconds=uptime,
            config_owner=config_owner,
            xml=xml,
        )

    def _local_qemu_uptime(self, name: str) -> float | None:
        """Seconds since the domain's QEMU process started, when we can see that process.

        Only for `qemu:///system` on this machine (pid file + /proc); None anywhere else and
        when the files cannot be read: uptime is a nicety, not something to fail over.
        """
        parts = urlsplit(self.uri)
        if parts.hostname or parts.scheme not in ("qemu", "qemu+unix") or parts.path != "/system":
            return None
        try:
            pid = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
            start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
            boot_uptime = float(Path("/proc/uptime").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return max(0.0, boot_uptime - start_ticks / os.sysconf("SC_CLK_TCK"))

    def define(self, xml: str) -> DomainInfo:
        """Define (or redefine) a persistent domain from XML carrying our metadata.

        The XML is validated against libvirt's schema. Redefining keeps the domain's UUID when
        the XML names none. Refuses with NotOwnedError when a domain of that name exists and
        is not ours, or belongs to another fleet. ValueError when the XML has no name or no
        vmfleet metadata (we would lose track of the domain).
        """
        name = xml_name(xml, kind="domain")
        owner = OwnerMetadata.from_domain_xml(xml)
        if owner is None:
            raise ValueError(f"domain XML for {name!r} carries no vmfleet metadata")
        current = self.get_domain(name)
        if current is not None:
            self._owned(name, doing="define")
            theirs = current.owner.fleet if current.owner else None
            if theirs != owner.fleet:
                raise NotOwnedError(
                    f"define: refused, the domain belongs to fleet {theirs!r}, not {owner.fleet!r}",
                    host=self.name,
                    vm=name,
                )
            xml = _with_uuid(xml, current.uuid)
        conn = self._connection()
        with self._call("define", vm=name):
            dom = conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
            return self._domain_info(dom)

    def start(self, name: str) -> None:
        """Start a defined domain; nothing to do when it is already active."""
        dom = self._owned(name, doing="start")
        with self._call("start", vm=name):
            if not dom.isActive():
                dom.create()

    def shutdown(self, name: str, *, timeout: float, force_after: bool = True) -> ShutdownResult:
        """Ask the guest to power off (ACPI), wait up to `timeout` s, then destroy it.

        With `force_after=False` a guest still running after `timeout` raises
        OperationTimeout instead. A transient domain that vanishes on power-off counts as
        shut down.
        """
        dom = self._owned(name, doing="shut down")
        with self._call("shut down", vm=name):
            if not dom.isActive():
                return ShutdownResult.ALREADY_OFF
            dom.shutdown()
        if self._wait_inactive(dom, name=name, timeout=timeout):
            return ShutdownResult.GRACEFUL
        if not force_after:
            raise OperationTimeout(
                f"host {self.name}: vm {name}: still running {timeout} s after the shutdown request"
            )
        self._destroy_if_active(dom, name=name)
        return ShutdownResult.FORCED

    def _wait_inactive(self, dom: Any, *, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not dom.isActive():
                    return True
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return True  # a transient domain is gone once it is off
                raise self._error(err, doing="wait for shutdown", vm=name) from err
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)

    def destroy(self, name: str) -> None:
        """Power a domain off at once (pull the plug); nothing to do when it is off."""
        dom = self._owned(name, doing="destroy")
        self._destroy_if_active(dom, name=name)

    def _destroy_if_active(self, dom: Any, *, name: str) -> None:
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError as err:
            code = err.get_error_code()
            if code == libvirt.VIR_ERR_NO_DOMAIN:
                return  # transient and already gone
            if code == libvirt.VIR_ERR_OPERATION_INVALID and not self._is_active(dom, name):
                return  # it went off by itself between the check and the destroy
            raise self._error(err, doing="destroy", vm=name) from err

    def _is_active(self, dom: Any, name: str) -> bool:
        with self._call("read state", vm=name):
            return bool(dom.isActive())

    def reboot(self, name: str) -> None:
        """Ask the guest to reboot (the hypervisor's default method)."""
        dom = self._owned(name, doing="reboot")
        with self._call("reboot", vm=name):
            dom.reboot(0)

    def suspend(self, name: str) -> None:
        """Pause a running domain's vCPUs (it keeps its memory)."""
        dom = self._owned(name, doing="suspend")
        with self._call("suspend", vm=name):
            dom.suspend()

    def resume(self, name: str) -> None:
        """Let a paused domain run again."""
        dom = self._owned(name, doing="resume")
        with self._call("resume", vm=name):
            dom.resume()

    def undefine(self, name: str) -> bool:
        """Remove a domain's definition with its managed save, snapshot/checkpoint metadata
        and NVRAM. False when there was no such domain.

        A running domain keeps running as a transient one until destroyed: call `destroy`
        first to remove it entirely. Volumes are not touched (see `delete_volume`).
        """
        if self._lookup(name) is None:
            return False
        dom = self._owned(name, doing="undefine")
        flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        )
        with self._call("undefine", vm=name):
            nvram = _has_nvram(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            if self._has_checkpoints(dom, name=name):
                flags |= libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
            try:
                dom.undefineFlags(flags | (libvirt.VIR_DOMAIN_UNDEFINE_NVRAM if nvram else 0))
            except libvirt.libvirtError as err:
                # A driver that keeps no NVRAM files (libvirt's test driver) refuses the flag.
                if not nvram or err.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                    raise
                dom.undefineFlags(flags)
        return True

    def remove_serial_log(self, path: str, *, vm: str) -> bool:
        """Delete the console log file vmfleet configured for a VM (`names.serial_log`).

        Only that exact path (ValueError for any other), and only on this machine: libvirt
        has no call to delete a file on a remote host. False when nothing was deleted (a
        remote host, or no file); HypervisorError when the file could not be removed.
        """
        if path != names.serial_log(vm):
            raise ValueError(f"{path} is not the serial log vmfleet configures for {vm}")
        if self.remote or not self.uri.startswith("qemu"):
            return False
        try:
            Path(path).unlink()
        except FileNotFoundError:
            return False
        except OSError as err:
            raise HypervisorError(
                f"remove serial log {path}: {err.strerror or err}", host=self.name, vm=vm
            ) from err
        return True

    def _has_checkpoints(self, dom: Any, *, name: str) -> bool:
        try:
            return bool(dom.listAllCheckpoints(0))
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                return False  # a driver without checkpoints has none to remove
            raise self._error(err, doing="list checkpoints", vm=name) from err

    def set_memory(
        self, name: str, mib: int, *, live: bool, config: bool, maximum: bool = False
    ) -> None:
        """Set the memory (MiB) of the running domain (`live`) and/or its config (`config`).

        With `maximum`, sets the maximum instead (config only; libvirt refuses it live).
        Raises ValueError when neither `live` nor `config` is asked.
        """
        flags = _affect_flags(live=live, config=config)
        dom = self._owned(name, doing="set memory")
        extra = libvirt.VIR_DOMAIN_MEM_MAXIMUM if maximum else 0
        with self._call(f"set memory to {mib} MiB", vm=name):
            for flag in flags:  # one call each: some drivers refuse LIVE|CONFIG together
                dom.setMemoryFlags(mib * 1024, flag | extra)

    def set_vcpus(
        self, name: str, count: int, *, live: bool, config: bool, maximum: bool = False
    ) -> None:
        """Set the vCPU count of the running domain and/or its config (`maximum`: the cap)."""
        flags = _affect_flags(live=live, config=config)
        dom = self._owned(name, doing="set vcpus")
        extra = libvirt.VIR_DOMAIN_VCPU_MAXIMUM if maximum else 0
        with self._call(f"set vcpus to {count}", vm=name):
            for flag in flags:
                dom.setVcpusFlags(count, flag | extra)

    def set_owner(self, name: str, owner: OwnerMetadata, *, live: bool, config: bool) -> None:
        """Rewrite our owner mark in the running domain (`live`) and/or its definition: after
        a change applied live, the running VM runs the new spec."""
        flags = _affect_flags(live=live, config=config)
        dom = self._owned(name, doing="set metadata")
        with self._call("set the owner metadata", vm=name):
            for flag in flags:
                dom.setMetadata(
                    libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    owner.to_metadata_xml(),
                    METADATA_PREFIX,
                    NAMESPACE,
                    flag,
                )

    def block_resize(self, name: str, target: str, capacity: int) -> None:
        """Grow the disk `target` (vda...) of a running domain to `capacity` bytes: the guest
        sees it at once, and the volume keeps the size."""
        dom = self._owned(name, doing="resize a disk")
        with self._call(f"grow disk {target} to {capacity} bytes", vm=name):
            dom.blockResize(target, capacity, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)

    def set_autostart(self, name: str, enabled: bool) -> None:
        """Whether the host starts the domain when libvirtd starts (persistent domains only)."""
        dom = self._owned(name, doing="set autostart")
        with self._call("set autostart", vm=name):
            dom.setAutostart(1 if enabled else 0)


def _safe_name(dom: Any) -> str | None:
    try:
        return str(dom.name())
    except libvirt.libvirtError:
        return None  # only used to decorate an error that is already being raised


def _with_uuid(xml: str, domain_uuid: str) -> str:
    """The domain XML with `<uuid>` set to `domain_uuid` when it has none (for redefinition)."""
    root = ET.fromstring(xml)
    if root.find("uuid") is not None:
        return xml
    name = root.find("name")
    position = 0 if name is None else list(root).index(name) + 1
    element = ET.Element("uuid")
    element.text = domain_uuid
    root.insert(position, element)
    ET.register_namespace(METADATA_PREFIX, NAMESPACE)  # keep `vmfleet:` rather than `ns0:`
    return ET.tostring(root, encoding="unicode")


def _has_nvram(xml: str) -> bool:
    """A domain with UEFI firmware, whose NVRAM file libvirt removes only when told. With
    `<os firmware='efi'>` libvirt picks the loader and NVRAM file at each start and keeps
    neither in the inactive XML, so the attribute alone counts."""
    root = ET.fromstring(xml)
    return (
        root.find("os/nvram") is not None
        or root.find("os/loader[@type='pflash']") is not None
        or root.find("os[@firmware='efi']") is not None
    )


def _affect_flags(*, live: bool, config: bool) -> list[int]:
    if not (live or config):
        raise ValueError("nothing to change: ask for live and/or config")
    flags = []
    if live:
        flags.append(libvirt.VIR_DOMAIN_AFFECT_LIVE)
    if config:
        flags.append(libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    return flags
