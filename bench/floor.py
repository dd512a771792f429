"""The floor: a minimal libvirt-python script making the same calls as `vmfleet up/down`,
in parallel threads, with nothing else (no spec, no state, no readiness).

    python -m bench.floor up PREFIX COUNT BASE_VOLUME KERNEL INITRD
    python -m bench.floor down PREFIX COUNT
"""

from __future__ import annotations

import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import libvirt

from vmfleet.drivers.domainxml import (
    BackingStore,
    DiskConfig,
    DomainConfig,
    KernelBoot,
    NicConfig,
    PortForward,
    UserAttachment,
    VolumeConfig,
    VolumeSource,
)
from vmfleet.drivers.seed import build_seed_iso

URI = "qemu:///system"
POOL = "default"


def _up_one(
    conn: libvirt.virConnect, prefix: str, i: int, base: str, kernel: str, initrd: str
) -> None:
    pool = conn.storagePoolLookupByName(POOL)
    base_vol = pool.storageVolLookupByName(base)
    name = f"{prefix}-{i}"
    root = f"vmf-{prefix}--{name}--root"
    seed = f"vmf-{prefix}--{name}--seed.iso"
    pool.createXML(
        VolumeConfig(
            name=root, capacity_bytes=64 << 20, backing=BackingStore(path=base_vol.path())
        ).to_xml(),
        0,
    )
    iso = build_seed_iso(
        user_data="#cloud-config\n", meta_data=f"local-hostname: {name}\n", network_config=None
    )
    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(iso)
        tmp.flush()
        vol = pool.createXML(
            f"<volume><name>{seed}</name><capacity>{len(iso)}</capacity>"
            "<target><format type='raw'/></target></volume>",
            0,
        )
        stream = conn.newStream(0)
        vol.upload(stream, 0, len(iso), 0)
        stream.send(iso)
        stream.finish()
    domain = DomainConfig(
        name=name,
        domain_type="qemu",
        memory_mib=128,
        vcpus=1,
        disks=(
            DiskConfig(target="vda", source=VolumeSource(pool=POOL, volume=root)),
            DiskConfig(
                target="vdb",
                source=VolumeSource(pool=POOL, volume=seed),
                format="raw",
                readonly=True,
            ),
        ),
        nics=(
            NicConfig(
                mac=f"52:54:00:fe:{i // 256:02x}:{i % 256:02x}",
                attachment=UserAttachment(
                    forwards=(PortForward(host_port=40000 + i, guest_port=22),)
                ),
            ),
        ),
        kernel_boot=KernelBoot(kernel=kernel, initrd=initrd, cmdline="console=ttyS0"),
    )
    conn.defineXML(domain.to_xml()).create()


def _down_one(conn: libvirt.virConnect, prefix: str, i: int) -> None:
    name = f"{prefix}-{i}"
    dom = conn.lookupByName(name)
    if dom.isActive():
        dom.destroy()
    dom.undefine()
    pool = conn.storagePoolLookupByName(POOL)
    for role in ("root", "seed.iso"):
        pool.storageVolLookupByName(f"vmf-{prefix}--{name}--{role}").delete(0)


def main(argv: list[str]) -> None:
    verb, prefix, count = argv[0], argv[1], int(argv[2])
    conn = libvirt.open(URI)
    with ThreadPoolExecutor(max_workers=8) as pool:
        if verb == "up":
            base, kernel, initrd = argv[3], argv[4], argv[5]
            futures = [
                pool.submit(_up_one, conn, prefix, i, base, kernel, initrd) for i in range(count)
            ]
        else:
            futures = [pool.submit(_down_one, conn, prefix, i) for i in range(count)]
        for future in futures:
            future.result()
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1:])
