"""The cached test guest images: host apt sources and module order parsing, and each image
booting on the real libvirtd under TCG, reached only through user-mode port forwards on
127.0.0.1 (QEMU's slirp with restrict=on, so guests reach nothing outside QEMU)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import libvirt
import pytest
from tests.support import images

SYSTEM_URI = "qemu:///system"
POOL = "default"

# ---------------------------------------------------------------------------- fast checks


def test_mirrors_come_from_one_line_and_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# comment\n"
        "deb [signed-by=/k.gpg] http://mirror.test/debian bookworm main contrib\n"
        "deb-src http://mirror.test/debian bookworm main\n"
        "deb http://mirror.test/debian bullseye main\n"
    )
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\n"
        "URIs: http://mirror.test/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "URIs: http://security.test/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "URIs: http://disabled.test/debian\n"
        "Suites: bookworm\n"
        "Components: main\n"
        "Enabled: no\n"
    )
    (tmp_path / "sources.list.d/other.list.disabled").write_text(
        "deb http://ignored.test/debian bookworm main\n"
    )
    assert images.debian_mirrors(tmp_path) == [
        "deb http://mirror.test/debian bookworm main",
        "deb http://mirror.test/debian bookworm-updates main",
        "deb http://security.test/debian-security bookworm-security main",
    ]


def test_mirrors_fall_back_to_deb_debian_org(tmp_path: Path) -> None:
    assert images.debian_mirrors(tmp_path) == list(images.FALLBACK_MIRRORS)


def test_modules_load_after_their_dependencies(tmp_path: Path) -> None:
    (tmp_path / "modules.dep").write_text(
        "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko"
        " kernel/net/core/failover.ko\n"
        "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
        "kernel/net/core/failover.ko:\n"
        "kernel/fs/isofs/isofs.ko:\n"
    )
    order = images._module_load_order(tmp_path, ["virtio_net", "isofs", "net_failover"])
    assert order == [
        "kernel/net/core/failover.ko",
        "kernel/drivers/net/net_failover.ko",
        "kernel/drivers/net/virtio_net.ko",
        "kernel/fs/isofs/isofs.ko",
    ]
    with pytest.raises(RuntimeError, match="not in"):
        images._module_load_order(tmp_path, ["e1000"])


# ---------------------------------------------------------------------------- boot helpers


class Lab:
    """Domains, volumes and files one test creates on qemu:///system, all removed at the end.

    Files live in a directory under the image cache: pytest's tmp_path is private to root,
    and QEMU runs as libvirt-qemu.
    """

    def __init__(self, conn: libvirt.virConnect) -> None:
        self.conn = conn
        self.name = f"vmftest-img-{secrets.token_hex(4)}"
        self.dir = images.cache_dir() / "runs" / self.name
        self.dir.mkdir(parents=True)
        for path in (self.dir.parent, self.dir):
            path.chmod(0o755)
        self.domains: list[libvirt.virDomain] = []
        self.volumes: list[libvirt.virStorageVol] = []

    def overlay(self, base: Path, *, capacity_bytes: int) -> Path:
        """A qcow2 volume in the default pool backed by ``base``, as vmfleet clones disks."""
        pool = self.conn.storagePoolLookupByName(POOL)
        xml = f"""<volume type='file'>
  <name>{self.name}-root.qcow2</name>
  <capacity unit='bytes'>{capacity_bytes}</capacity>
  <target><format type='qcow2'/></target>
  <backingStore><path>{escape(str(base))}</path><format type='qcow2'/></backingStore>
</volume>"""
        volume = pool.createXML(xml, 0)
        self.volumes.append(volume)
        return Path(volume.path())

    def seed(self, *, meta_data: str, user_data: str, network_config: str | None = None) -> Path:
        """A NoCloud seed ISO (label cidata), built the way cloud-init documents it."""
        source = self.dir / "seed"
        source.mkdir()
        (source / "meta-data").write_text(meta_data)
        (source / "user-data").write_text(user_data)
        if network_config is not None:
            (source / "network-config").write_text(network_config)
        iso = self.dir / "seed.iso"
        subprocess.run(
            ["genisoimage", "-quiet", "-V", "cidata", "-J", "-r", "-o", str(iso), str(source)],
            check=True,
        )
        return iso

    def start(self, xml: str) -> libvirt.virDomain:
        domain = self.conn.defineXML(xml)
        self.domains.append(domain)
        domain.create()
        return domain

    def console(self) -> str:
        path = self.dir / "console.log"
        return path.read_text(errors="replace") if path.exists() else "(no console log)"

    def close(self) -> None:
        for domain in self.domains:
            with contextlib.suppress(libvirt.libvirtError):
                if domain.isActive():
                    domain.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        for volume in self.volumes:
            with contextlib.suppress(libvirt.libvirtError):
                volume.delete(0)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("building guest images and using qemu:///system need root")
    conn = libvirt.open(SYSTEM_URI)
    created = Lab(conn)
    try:
        yield created
    finally:
        created.close()
        conn.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def user_nic_xml(*, mac: str, host_port: int, guest_port: int = 22) -> str:
    """User-mode networking with a port forward on Debian 12's libvirt 9.0.

    Debian builds libvirt without passt (``<backend type='passt'/>`` is rejected) and the
    slirp backend of ``<interface type='user'>`` has no ``<portForward>``, so the NIC goes on
    QEMU's command line. restrict=on keeps the guest from reaching anything beyond QEMU; the
    explicit PCI slot keeps the device clear of the slots libvirt assigns (on q35 the bus is
    pcie.0); an empty romfile skips the iPXE option ROM, a few tenths of a second under TCG.
    """
    return f"""<qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=vmfnet0,restrict=on,hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=vmfnet0,mac={mac},bus=pci.0,addr=0x10,romfile='/>
  </qemu:commandline>"""


def domain_xml(lab: Lab, *, memory_mib: int, vcpus: int, boot: str, devices: str, nic: str) -> str:
    return f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{lab.name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    {boot}
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    {devices}
    <serial type='pty'>
      <log file='{lab.dir}/console.log' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
  {nic}
</domain>"""


def disk_xml(path: Path, *, target: str, fmt: str, readonly: bool = False) -> str:
    return f"""<disk type='file' device='disk'>
      <driver name='qemu' type='{fmt}'/>
      <source file='{escape(str(path))}'/>
      <target dev='{target}' bus='virtio'/>
      {"<readonly/>" if readonly else ""}
    </disk>"""


def read_banner(port: int, *, deadline: float) -> str:
    """The first line a server on 127.0.0.1:port sends, retried until one arrives.

    slirp accepts every connection at once; while the guest has no listener (or no network
    yet) the connection then closes, or stays silent until slirp gives up. Short attempts
    keep a silent one from hiding the moment the guest starts answering.
    """
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                line = conn.makefile("rb").readline().decode(errors="replace").strip()
            if line:
                return line
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no banner on 127.0.0.1:{port}")
        time.sleep(0.2)


def wait_for_shutoff(domain: libvirt.virDomain, *, deadline: float) -> None:
    while domain.isActive():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{domain.name()} still running")
        time.sleep(0.2)


# ---------------------------------------------------------------------------- micro guest


@pytest.mark.e2e
def test_micro_guest_boots_in_seconds_and_answers_with_its_hostname(lab: Lab) -> None:
    kernel, initrd = images.micro_kernel(), images.micro_initrd()
    root = lab.overlay(images.micro_disk(), capacity_bytes=images.MICRO_DISK_BYTES)
    seed = lab.seed(
        meta_data=f"instance-id: {lab.name}\nlocal-hostname: micro-7\n",
        user_data="#cloud-config\n{}\n",
    )
    port = free_port()
    xml = domain_xml(
        lab,
        memory_mib=128,
        vcpus=1,
        boot=f"""<kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{images.MICRO_CMDLINE}</cmdline>""",
        devices=disk_xml(root, target="vda", fmt="qcow2")
        + disk_xml(seed, target="vdb", fmt="raw", readonly=True),
        nic=user_nic_xml(mac="52:54:00:7e:57:01", host_port=port),
    )

    started = time.monotonic()
    domain = lab.start(xml)
    running = time.monotonic()
    try:
        banner = read_banner(port, deadline=started + 60)
    except TimeoutError:
        pytest.fail(f"micro guest never answered; console:\n{lab.console()}")
    answered = time.monotonic()
    print(
        f"micro guest: define+start {running - started:.1f} s, "
        f"then banner after {answered - running:.1f} s"
    )

    assert banner == f"{images.MICRO_BANNER_PREFIX}-micro-7"
    assert images.MICRO_READY_LINE in lab.console()

    # The ACPI power button (virsh shutdown) powers the guest off cleanly.
    domain.shutdown()
    wait_for_shutoff(domain, deadline=time.monotonic() + 30)
