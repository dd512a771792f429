"""The domain definition of a VM: its disks, NICs (with forwards) and the rest of its config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from vmfleet.core import guestarch
from vmfleet.core.expand import Instance
from vmfleet.core.plan import runtime_hash, spec_hash
from vmfleet.drivers import names
from vmfleet.drivers.domainxml import (
    BridgeAttachment,
    DiskConfig,
    DomainConfig,
    FileSource,
    KernelBoot,
    NetworkAttachment,
    NicConfig,
    PortForward,
    UserAttachment,
    VolumeSource,
    parse_domain,
)
from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.engine import hostkeys, hosts
from vmfleet.engine.context import FleetContext
from vmfleet.engine.provision.networks import attachment_for
from vmfleet.engine.provision.ports import CONTROL_GUEST_PORT, FORWARD_SLOT_BASE, forward_port

if TYPE_CHECKING:
    from vmfleet.drivers.libvirt import LibvirtHost
    from vmfleet.spec import models


def existing_disks(ctx: FleetContext, instance: Instance, host_name: str) -> tuple[DiskConfig, ...]:
    """The VM's disks by their volume names: root (vda), seed (vdb), data disks (vdc…)."""
    pool = ctx.host_specs()[host_name].pool

    def vol(role: str) -> VolumeSource:
        return VolumeSource(
            pool=pool, volume=names.volume(fleet=ctx.fleet, vm=instance.name, role=role)
        )

    disks = [
        DiskConfig(target="vda", source=vol("root"), format="qcow2", boot_order=1),
        DiskConfig(target="vdb", source=vol("seed.iso"), format="raw", readonly=True),
    ]
    for n, data in enumerate(instance.fields.data_disks):
        disks.append(
            DiskConfig(target=f"vd{chr(ord('c') + n)}", source=vol(f"data-{n}"), format=data.format)
        )
    return tuple(disks)


def with_overlays(
    host: LibvirtHost, vm: str, disks: tuple[DiskConfig, ...]
) -> tuple[DiskConfig, ...]:
    """`disks`, except that a disk writing to an external snapshot overlay of this VM keeps
    it: redefining a changed VM must not drop the writes made since the snapshot. Likewise a
    volume still named the 0.1.0 way (`vmf-<fleet>--<vm>--<role>`) stays the VM's disk."""
    domain = parse_domain(host.domain_xml(vm, inactive=True))
    current: dict[str, FileSource | VolumeSource] = {}
    for d in domain.disks:
        source = d.source
        if isinstance(source, FileSource) and names.is_overlay(Path(source.path).name):
            current[d.target] = FileSource(path=source.path)
        owner = domain.owner
        if (
            isinstance(source, VolumeSource)
            and owner is not None
            and names.is_legacy_volume(source.volume, fleet=owner.fleet, vm=vm)
        ):
            current[d.target] = source
    return tuple(replace(d, source=current[d.target]) if d.target in current else d for d in disks)


def domain_type(ctx: FleetContext, host: LibvirtHost, host_name: str, arch: str = "x86_64") -> str:
    """`kvm` or `qemu` for a guest of `arch` on a host: `kvm` only for the host's own arch,
    as configured, or with `auto` where KVM really works (see `core.guestarch.uses_kvm`)."""
    wanted = ctx.host_specs()[host_name].domain_type
    if wanted == "qemu":
        return "qemu"
    host_arch = host.capabilities(probe_kvm=False).arch
    works = (
        wanted == "auto"
        and arch == host_arch
        and bool(hosts.kvm_answer(ctx, host_name, probe=True))
    )
    kvm = guestarch.uses_kvm(arch=arch, host_arch=host_arch, wanted=wanted, kvm_works=works)
    return "kvm" if kvm else "qemu"


def kernel_boot(kernel: models.KernelBoot | None) -> KernelBoot | None:
    """The spec's direct kernel boot as the domain XML takes it (no cmdline when empty)."""
    if kernel is None:
        return None
    return KernelBoot(kernel=kernel.kernel, initrd=kernel.initrd, cmdline=kernel.cmdline or None)


def owner(ctx: FleetContext, instance: Instance, host: LibvirtHost) -> OwnerMetadata:
    """The owner mark of a VM as the spec has it now (with its SSH host public key)."""
    return OwnerMetadata(
        fleet=ctx.fleet,
        vm=instance.name,
        template=instance.template,
        index=instance.index,
        spec_hash=spec_hash(instance),
        host_key=hostkeys.public_key(ctx, host, instance.name),
        runtime_hash=runtime_hash(instance),
    )


def domain_config(
    ctx: FleetContext,
    instance: Instance,
    host: LibvirtHost,
    host_name: str,
    disks: tuple[DiskConfig, ...],
) -> DomainConfig:
    fields = instance.fields
    nics: list[NicConfig] = []
    for slot, nic in enumerate(instance.nics):
        if nic.mode == "user":
            forwards: tuple[PortForward, ...] = (
                PortForward(
                    host_port=forward_port(ctx, host=host_name, vm=instance.name, slot=slot),
                    guest_port=22,
                ),
            )
            if fields.ready.wait_for.startswith("port:") and slot == 0:
                guest = int(fields.ready.wait_for[5:])
                extra = [CONTROL_GUEST_PORT] + ([guest] if guest != 22 else [])
                forwards += tuple(
                    PortForward(
                        host_port=forward_port(
                            ctx, host=host_name, vm=instance.name, slot=FORWARD_SLOT_BASE + port
                        ),
                        guest_port=port,
                    )
                    for port in extra
                )
            attachment: NetworkAttachment | BridgeAttachment | UserAttachment = UserAttachment(
                forwards=forwards
            )
        else:
            attachment = attachment_for(ctx, nic.network)
        net = ctx.loaded.spec.networks.get(nic.network)
        # nat/isolated networks carry their own <mtu>, which libvirt gives every tap device
        mtu = net.mtu if net is not None and net.mode in ("bridge", "existing") else None
        nics.append(NicConfig(mac=nic.mac, attachment=attachment, model=nic.model, mtu=mtu))  # type: ignore[arg-type]
    kvm = domain_type(ctx, host, host_name, fields.arch) == "kvm"
    runs_as = guestarch.guest_platform(
        fields.arch, kvm=kvm, machine=fields.machine, cpu_model=fields.cpu_model
    )
    return DomainConfig(
        name=instance.name,
        domain_type=runs_as.domain_type,  # type: ignore[arg-type]
        memory_mib=fields.memory // (1024 * 1024),
        vcpus=fields.vcpus,
        arch=fields.arch,
        machine=runs_as.machine,
        cpu_model=runs_as.cpu_model,
        disks=disks,
        nics=tuple(nics),
        serial_log_path=names.serial_log(instance.name),
        guest_agent=True,
        graphics="vnc" if fields.graphics == "vnc" else None,
        firmware=fields.firmware,  # type: ignore[arg-type]
        kernel_boot=kernel_boot(fields.kernel),
        owner=owner(ctx, instance, host),
        description=fields.description,
    )
