"""What a host is and can run, with the cached answer of the KVM probe."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import libvirt

from vmfleet.drivers.libvirt.probe import _Probe
from vmfleet.drivers.libvirt.types import BootProbe, GuestCapability, HostCapabilities, KiB, MiB


class _Capabilities(_Probe):
    """Host and guest capabilities; `kvm_usable` from the cached KVM probe."""

    def capabilities(self, *, probe_kvm: bool = True, pool: str = "default") -> HostCapabilities:
        """What the host is and can run; `kvm_usable` from the (cached) KVM probe.

        The first probe takes a few seconds and needs `pool` (see `probe_kvm`). With
        `probe_kvm=False` it is not run and `kvm_usable` is its cached answer, or None when
        it never ran.
        """
        conn = self._connection()
        with self._call("read capabilities"):
            caps = ET.fromstring(conn.getCapabilities())
            info = conn.getInfo()
            hostname = str(conn.getHostname())
            version = _version_string(int(conn.getLibVersion()))
            hypervisor = _version_string(int(conn.getVersion()))
        host_arch = caps.findtext("host/cpu/arch") or ""
        guests = tuple(self._guest_capability(g) for g in caps.findall("guest"))
        result = HostCapabilities(
            hostname=hostname,
            arch=host_arch,
            cpus=int(info[2]),
            memory_bytes=self._memory_bytes(fallback_mib=int(info[1])),
            guests=guests,
            kvm_usable=self._kvm_usable,
            libvirt_version=version,
            host_uuid=caps.findtext("host/uuid") or "",
            hypervisor_version=hypervisor,
        )
        if probe_kvm:
            usable = self._probe_kvm_cached(result, timeout=8.0, pool=pool)
            result = replace(result, kvm_usable=usable)
        return result

    def _memory_bytes(self, *, fallback_mib: int) -> int:
        """The host's total memory. Node info counts NUMA cells only, which misses memory
        hot-plugged outside them (seen on firecracker VMs), so ask for the memory stats."""
        conn = self._connection()
        try:
            stats = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise self._error(err, doing="read memory statistics") from err
            return fallback_mib * MiB  # a driver without memory stats (test): node info it is
        return int(stats["total"]) * KiB

    def _guest_capability(self, guest: ET.Element) -> GuestCapability:
        arch_el = guest.find("arch")
        arch = "" if arch_el is None else arch_el.get("name", "")
        types: list[str] = []
        machines: list[str] = []
        emulator = None
        if arch_el is not None:
            emulator = arch_el.findtext("emulator")
            for machine in arch_el.iter("machine"):
                if machine.text and machine.text not in machines:
                    machines.append(machine.text)
            types = [d.get("type", "") for d in arch_el.findall("domain")]
        os_type = guest.findtext("os_type") or ""
        firmware = self._firmware(arch=arch, virttype=types[0] if types else None, os_type=os_type)
        return GuestCapability(
            os_type=os_type,
            arch=arch,
            domain_types=tuple(types),
            machines=tuple(machines),
            emulator=emulator,
            firmware=firmware,
        )

    def _firmware(self, *, arch: str, virttype: str | None, os_type: str) -> tuple[str, ...]:
        if os_type != "hvm" or virttype is None:
            return ()
        conn = self._connection()
        try:
            xml = conn.getDomainCapabilities(None, arch, None, virttype, 0)
        except libvirt.libvirtError as err:
            if err.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                return ()  # the driver cannot say (test driver, exotic arch): nothing offered
            raise self._error(err, doing=f"read domain capabilities for {arch}") from err
        root = ET.fromstring(xml)
        return tuple(v.text or "" for v in root.findall("os/enum[@name='firmware']/value"))

    def probe_kvm(self, *, timeout: float = 8.0, pool: str = "default") -> bool:
        """Whether KVM really runs guests here (cached per host after the first answer).

        /dev/kvm can exist and still make guests crawl or hang (broken nested
        virtualisation: firmware runs, a kernel does not get anywhere), so this boots the probe
        payload (see `boot_probe`) as a `kvm` domain and needs it done within `timeout` s.
        False at once when the host offers no `kvm` domain type or is not x86_64 (the payload
        is x86-64 code). Uses `pool` for the payload's volume.
        """
        return self._probe_kvm_cached(
            self.capabilities(probe_kvm=False), timeout=timeout, pool=pool
        )

    def _probe_kvm_cached(self, caps: HostCapabilities, *, timeout: float, pool: str) -> bool:
        with self._kvm_lock:
            if self._kvm_usable is None:
                if caps.arch != "x86_64" or "kvm" not in caps.domain_types():
                    self._kvm_usable = False
                else:
                    probe = self.boot_probe(domain_type="kvm", timeout=timeout, pool=pool)
                    self._kvm_probe = probe
                    self._kvm_usable = probe.booted
            return self._kvm_usable

    def remember_kvm(self, usable: bool) -> None:
        """Take a KVM answer known from an earlier probe (vmfleet's cache), so `probe_kvm`
        and `capabilities` give it without booting the probe again."""
        with self._kvm_lock:
            self._kvm_usable = usable

    @property
    def last_kvm_probe(self) -> BootProbe | None:
        """The probe behind the cached `kvm_usable` answer (None if none ran), to explain it."""
        return self._kvm_probe


def _version_string(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"
