"""The domain XML of an HA VM: disks on the cluster's storage, NICs on host bridges.

VirtualDomain starts it from this file (`config=`); libvirt never has it defined, so only
Pacemaker starts it. DRBD disks are `<disk type='block'>` on `/dev/drbd/by-res/…/0` with
`cache='none' io='native'` (seed 001's template); shared disks are qcow2 files.
"""

from __future__ import annotations

from vmfleet.core.cluster import ClusterConfig, HaVm
from vmfleet.core.expand import Instance
from vmfleet.core.plan import spec_hash
from vmfleet.drivers.domainxml import (
    BlockSource,
    BridgeAttachment,
    DiskConfig,
    DomainConfig,
    FileSource,
    NicConfig,
)
from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.engine.provision.definition import kernel_boot
from vmfleet.spec.models import FleetSpec
from vmfleet.spec.resolve import networks


def disks(config: ClusterConfig, vm: HaVm) -> tuple[DiskConfig, ...]:
    """DRBD: raw block devices with `io='native'`; shared: qcow2 files. No host cache."""
    return tuple(
        DiskConfig(
            target=disk.target,
            source=BlockSource(path=disk.path) if config.drbd else FileSource(path=disk.path),
            format="raw" if config.drbd else "qcow2",
            cache="none",
            io="native" if config.drbd else None,
            boot_order=1 if n == 0 else None,
        )
        for n, disk in enumerate(vm.disks)
    )


def domain_xml(
    spec: FleetSpec, config: ClusterConfig, vm: HaVm, instance: Instance, *, fleet: str
) -> str:
    """The XML VirtualDomain reads from `vm.config`."""
    fields = instance.fields
    nets = networks(spec)
    nics = tuple(
        NicConfig(
            mac=nic.mac,
            attachment=BridgeAttachment(bridge=nets[nic.network].bridge or ""),
            model=nic.model,  # type: ignore[arg-type]
        )
        for nic in instance.nics
    )
    return DomainConfig(
        name=vm.name,
        domain_type=config.spec.domain_type,
        memory_mib=vm.memory_mib,
        vcpus=vm.vcpus,
        arch=fields.arch,
        machine=fields.machine or "q35",
        cpu_model=fields.cpu_model,
        disks=disks(config, vm),
        nics=nics,
        guest_agent=False,
        graphics="vnc" if fields.graphics == "vnc" else None,
        firmware=fields.firmware,  # type: ignore[arg-type]
        kernel_boot=kernel_boot(fields.kernel),
        owner=OwnerMetadata(
            fleet=fleet,
            vm=vm.name,
            template=instance.template,
            index=instance.index,
            spec_hash=spec_hash(instance),
        ),
        description=fields.description,
        rng=False,
    ).to_xml()
