"""The domain document: `DomainConfig` with its disks, NICs, firmware, kernel boot, owner."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from vmfleet.drivers.domainxml.common import (
    GUEST_AGENT_CHANNEL,
    QEMU_NAMESPACE,
    DomainType,
    Firmware,
    Graphics,
    LifecycleAction,
    require,
    sub,
    tostring,
)
from vmfleet.drivers.domainxml.disks import DiskConfig
from vmfleet.drivers.domainxml.nics import NicConfig
from vmfleet.drivers.metadata import OwnerMetadata


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelBoot:
    """Direct kernel boot: QEMU loads kernel and initrd from host files."""

    kernel: str
    initrd: str | None = None
    cmdline: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainConfig:
    """Everything vmfleet puts in a domain's XML.

    `cpu_model` None means `host-passthrough` under kvm and QEMU's default model under qemu
    (TCG); the values `host-passthrough`, `host-model` and `maximum` select that CPU mode,
    anything else is a named model (`qemu64`, `Haswell`, ...). `max_vcpus` above `vcpus`
    allows CPU hot-plug; `current_memory_mib` below `memory_mib` starts the balloon inflated.
    A pty serial console is always there; `serial_log_path` also logs it to a host file.
    `firmware='uefi'` lets libvirt pick an EFI firmware (`<os firmware='efi'>`); one without
    Secure Boot when the kernel is booted directly.
    """

    name: str
    domain_type: DomainType
    memory_mib: int
    vcpus: int
    uuid: str | None = None
    arch: str = "x86_64"
    machine: str | None = "q35"
    emulator: str | None = None
    cpu_model: str | None = None
    current_memory_mib: int | None = None
    max_vcpus: int | None = None
    disks: tuple[DiskConfig, ...] = ()
    nics: tuple[NicConfig, ...] = ()
    serial_log_path: str | None = None
    guest_agent: bool = True
    graphics: Graphics | None = None
    firmware: Firmware = "bios"
    kernel_boot: KernelBoot | None = None
    owner: OwnerMetadata | None = None
    description: str | None = None
    rng: bool = True
    memballoon: bool = True
    on_poweroff: LifecycleAction = "destroy"
    on_reboot: LifecycleAction = "restart"
    on_crash: LifecycleAction = "destroy"

    def __post_init__(self) -> None:
        require(bool(self.name), "a domain needs a name")
        require(self.memory_mib >= 1 and self.vcpus >= 1, "memory and vcpus must be positive")
        if self.current_memory_mib is not None:
            require(
                1 <= self.current_memory_mib <= self.memory_mib,
                "current_memory_mib must be between 1 and memory_mib",
            )
        if self.max_vcpus is not None:
            require(self.max_vcpus >= self.vcpus, "max_vcpus must be at least vcpus")
        targets = [disk.target for disk in self.disks]
        require(len(targets) == len(set(targets)), f"duplicate disk targets: {targets}")
        macs = [nic.mac for nic in self.nics]
        require(len(macs) == len(set(macs)), f"duplicate MAC addresses: {macs}")

    def to_element(self) -> ET.Element:
        """The `<domain>` element."""
        root = ET.Element("domain", {"type": self.domain_type})
        sub(root, "name", self.name)
        if self.uuid is not None:
            sub(root, "uuid", self.uuid)
        if self.description is not None:
            sub(root, "description", self.description)
        if self.owner is not None:
            sub(root, "metadata").append(self.owner.to_element())
        sub(root, "memory", str(self.memory_mib), unit="MiB")
        if self.current_memory_mib is not None:
            sub(root, "currentMemory", str(self.current_memory_mib), unit="MiB")
        if self.max_vcpus is not None and self.max_vcpus > self.vcpus:
            sub(root, "vcpu", str(self.max_vcpus), placement="static", current=str(self.vcpus))
        else:
            sub(root, "vcpu", str(self.vcpus), placement="static")
        root.append(self._os_element())
        if self.arch in ("x86_64", "i686"):
            features = sub(root, "features")
            sub(features, "acpi")
            sub(features, "apic")
        elif self.arch == "aarch64" and self.firmware == "uefi":
            # Without it QEMU's `virt` runs acpi=off: no ACPI power button, so the guest never
            # hears a shutdown request. (libvirt refuses ACPI on aarch64 without UEFI.)
            sub(sub(root, "features"), "acpi")
        cpu = self._cpu_element()
        if cpu is not None:
            root.append(cpu)
        sub(root, "clock", offset="utc")
        sub(root, "on_poweroff", self.on_poweroff)
        sub(root, "on_reboot", self.on_reboot)
        sub(root, "on_crash", self.on_crash)
        root.append(self._devices_element())
        args = self._qemu_args()
        if args:
            commandline = sub(root, f"{{{QEMU_NAMESPACE}}}commandline")
            for arg in args:
                sub(commandline, f"{{{QEMU_NAMESPACE}}}arg", value=arg)
        return root

    def to_xml(self) -> str:
        """The domain XML document, as `virConnectDefineXML` takes it."""
        return tostring(self.to_element())

    def _os_element(self) -> ET.Element:
        os_el = ET.Element("os", {"firmware": "efi"} if self.firmware == "uefi" else {})
        sub(os_el, "type", "hvm", arch=self.arch, machine=self.machine)
        if self.firmware == "uefi" and self.kernel_boot is not None:
            # With Secure Boot the firmware checks the kernel QEMU hands it against the
            # enrolled keys (Microsoft's), which refuse a distribution's own kernel.
            sub(sub(os_el, "firmware"), "feature", enabled="no", name="secure-boot")
        if self.kernel_boot is not None:
            sub(os_el, "kernel", self.kernel_boot.kernel)
            if self.kernel_boot.initrd is not None:
                sub(os_el, "initrd", self.kernel_boot.initrd)
            if self.kernel_boot.cmdline is not None:
                sub(os_el, "cmdline", self.kernel_boot.cmdline)
        return os_el

    def _cpu_element(self) -> ET.Element | None:
        model = self.cpu_model
        if model is None:
            model = "host-passthrough" if self.domain_type == "kvm" else None
        if model is None:
            return None
        if model in ("host-passthrough", "host-model", "maximum"):
            return ET.Element("cpu", {"mode": model, "check": "none"})
        cpu = ET.Element("cpu", {"mode": "custom", "match": "exact", "check": "none"})
        sub(cpu, "model", model, fallback="forbid")
        return cpu

    def _devices_element(self) -> ET.Element:
        devices = ET.Element("devices")
        if self.emulator is not None:
            sub(devices, "emulator", self.emulator)
        for disk in self.disks:
            devices.append(disk.to_element())
        if any(disk.bus == "scsi" for disk in self.disks):
            # libvirt's default SCSI HBA is an emulated LSI card; virtio-scsi is the fast one.
            sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
        for nic in self.nics:
            if not nic.is_slirp:
                devices.append(nic.to_element())
        serial = sub(devices, "serial", type="pty")
        if self.serial_log_path is not None:
            sub(serial, "log", file=self.serial_log_path, append="on")
        sub(serial, "target", port="0")
        console = sub(devices, "console", type="pty")
        sub(console, "target", type="serial", port="0")
        if self.guest_agent:
            channel = sub(devices, "channel", type="unix")
            sub(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
        if self.graphics == "vnc":
            graphics = sub(devices, "graphics", type="vnc", port="-1", autoport="yes")
            sub(graphics, "listen", type="address", address="127.0.0.1")
            # virtio-vga: VGA-compatible for the BIOS, unlike libvirt's default (cirrus).
            sub(sub(devices, "video"), "model", type="virtio")
        if self.memballoon:
            sub(devices, "memballoon", model="virtio")
        else:
            sub(devices, "memballoon", model="none")
        if self.rng:
            rng = sub(devices, "rng", model="virtio")
            sub(rng, "backend", "/dev/urandom", model="random")
        return devices

    def _qemu_args(self) -> list[str]:
        args: list[str] = []
        on_pc = self.machine is not None and (
            self.machine == "pc" or self.machine.startswith("pc-i440fx")
        )
        slirp_count = 0
        for index, nic in enumerate(self.nics):
            if not nic.is_slirp:
                continue
            # On pc, take slots from the top of pci.0 (0x1f, 0x1e, ...); libvirt fills and
            # hot-plugs from the bottom. On q35 (or an unknown machine) QEMU picks.
            pci_addr = 0x1F - slirp_count if on_pc else None
            args += nic.qemu_args(netdev_id=f"vmfnet{index}", pci_addr=pci_addr)
            slirp_count += 1
        return args
