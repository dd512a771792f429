"""libvirt XML from typed objects: golden files, escaping, libvirt's own acceptance, read-back.

Golden files live in tests/golden/xml/ and are compared after C14N canonicalisation; run with
VMFLEET_REGEN_GOLDEN=1 to rewrite them after an intended change (then review the diff).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from vmfleet.drivers.domainxml import (
    BackingStore,
    BridgeAttachment,
    DhcpHost,
    DiskConfig,
    DomainConfig,
    FileSource,
    KernelBoot,
    NetworkAttachment,
    NetworkConfig,
    NicConfig,
    PortForward,
    SnapshotConfig,
    SnapshotDisk,
    UserAttachment,
    VolumeConfig,
    VolumeSource,
    parse_domain,
)
from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.errors import HypervisorError

GOLDEN_DIR = Path(__file__).parent / "golden" / "xml"
REGEN = os.environ.get("VMFLEET_REGEN_GOLDEN") == "1"
HOSTILE = "x'\"<>&]]>y"

OWNER = OwnerMetadata(
    fleet="lab", vm="ubuntu-dev-0", template="ubuntu-dev", index=0, spec_hash="5e1f"
)
ROOT = DiskConfig(
    target="vda", source=VolumeSource(pool="default", volume="vmf-lab--ubuntu-dev-0--root")
)
SEED = DiskConfig(
    target="sda",
    bus="sata",
    device="cdrom",
    format="raw",
    source=VolumeSource(pool="default", volume="vmf-lab--ubuntu-dev-0--seed.iso"),
)
SSH_FORWARD = PortForward(host_port=2222, guest_port=22)


def _domain(**changes: object) -> DomainConfig:
    fields: dict[str, object] = {
        "name": "ubuntu-dev-0",
        "uuid": "6e3c2a51-3a5e-4d0b-9f4e-2f1c0c6f3a10",
        "domain_type": "qemu",
        "memory_mib": 1024,
        "vcpus": 2,
        "disks": (ROOT, SEED),
        "nics": (NicConfig(mac="52:54:00:12:34:10", attachment=NetworkAttachment(network="lab")),),
        "owner": OWNER,
    }
    fields.update(changes)
    return DomainConfig(**fields)  # type: ignore[arg-type]


DOMAINS: dict[str, Callable[[], DomainConfig]] = {
    "domain-minimal": lambda: DomainConfig(
        name="tiny", domain_type="qemu", memory_mib=64, vcpus=1, guest_agent=False
    ),
    "domain-network": lambda: _domain(),
    "domain-full": lambda: _domain(
        domain_type="kvm",
        emulator="/usr/bin/qemu-system-x86_64",
        current_memory_mib=512,
        max_vcpus=4,
        disks=(
            DiskConfig(
                target="vda",
                source=VolumeSource(pool="default", volume="root"),
                cache="none",
                io="native",
                discard="unmap",
                boot_order=1,
                serial="root-0",
            ),
            DiskConfig(
                target="vdb", source=FileSource(path="/var/lib/vmfleet/data.raw"), format="raw"
            ),
            DiskConfig(target="sdb", bus="sata", device="cdrom", format="raw", source=None),
            DiskConfig(target="sdc", bus="scsi", source=FileSource(path="/srv/scsi.qcow2")),
        ),
        nics=(
            NicConfig(mac="52:54:00:12:34:10", attachment=BridgeAttachment(bridge="br0"), mtu=9000),
            NicConfig(
                mac="52:54:00:12:34:11",
                model="e1000e",
                attachment=NetworkAttachment(network="dmz"),
                mtu=1400,
            ),
        ),
        serial_log_path="/var/log/vmfleet/ubuntu-dev-0.log",
        graphics="vnc",
        firmware="uefi",
        description="a full one",
        on_crash="restart",
    ),
    "domain-tcg-cpu-model": lambda: _domain(cpu_model="qemu64", memballoon=False, rng=False),
    "domain-kernel-boot": lambda: _domain(
        disks=(),
        kernel_boot=KernelBoot(
            kernel="/cache/vmlinuz", initrd="/cache/initrd.img", cmdline="console=ttyS0 quiet"
        ),
    ),
    "domain-aarch64-uefi-kernel-boot": lambda: _domain(
        arch="aarch64",
        machine="virt",
        cpu_model="cortex-a57",
        firmware="uefi",
        disks=(ROOT,),
        nics=(NicConfig(mac="52:54:00:12:34:10", attachment=UserAttachment()),),
        kernel_boot=KernelBoot(kernel="/cache/Image", initrd="/cache/initrd.img"),
    ),
    "domain-pseries": lambda: _domain(
        arch="ppc64le",
        machine="pseries",
        cpu_model="POWER9",
        disks=(ROOT,),
        nics=(NicConfig(mac="52:54:00:12:34:10", attachment=UserAttachment()),),
        kernel_boot=KernelBoot(kernel="/cache/vmlinux", cmdline="console=hvc0"),
    ),
    "domain-slirp-q35": lambda: _domain(
        nics=(
            NicConfig(mac="52:54:00:12:34:10", attachment=UserAttachment(forwards=(SSH_FORWARD,))),
            NicConfig(mac="52:54:00:12:34:11", attachment=NetworkAttachment(network="lab")),
            NicConfig(
                mac="52:54:00:12:34:12",
                attachment=UserAttachment(
                    forwards=(
                        PortForward(host_port=2223, guest_port=22),
                        PortForward(host_port=8080, guest_port=80, host_address="127.0.0.2"),
                        PortForward(host_port=5353, guest_port=53, proto="udp"),
                    )
                ),
            ),
        )
    ),
    "domain-slirp-pc": lambda: _domain(
        machine="pc",
        disks=(ROOT, replace(SEED, bus="ide", target="hdc")),
        nics=(
            NicConfig(mac="52:54:00:12:34:10", attachment=UserAttachment(forwards=(SSH_FORWARD,))),
            NicConfig(mac="52:54:00:12:34:11", attachment=UserAttachment()),
        ),
    ),
    "domain-passt": lambda: _domain(
        nics=(
            NicConfig(
                mac="52:54:00:12:34:10",
                attachment=UserAttachment(backend="passt", forwards=(SSH_FORWARD,)),
            ),
        )
    ),
}

VOLUMES: dict[str, Callable[[], VolumeConfig]] = {
    "volume-raw": lambda: VolumeConfig(
        name="vmf-lab--db--data-0", capacity_bytes=1 << 30, format="raw"
    ),
    "volume-linked-clone": lambda: VolumeConfig(
        name="vmf-lab--ubuntu-dev-0--root",
        capacity_bytes=20 << 30,
        backing=BackingStore(path="/var/lib/libvirt/images/vmf-base--debian-12--0123456789ab"),
    ),
}

NETWORKS: dict[str, Callable[[], NetworkConfig]] = {
    "network-nat": lambda: NetworkConfig(
        name="lab",
        mode="nat",
        bridge="virbr88",
        cidr="192.168.88.0/24",
        dhcp_range=("192.168.88.100", "192.168.88.200"),
        hosts=(
            DhcpHost(mac="52:54:00:12:34:10", ip="192.168.88.10", name="ubuntu-dev-0"),
            DhcpHost(mac="52:54:00:12:34:11", ip="192.168.88.11"),
        ),
        domain="lab.test",
    ),
    "network-isolated": lambda: NetworkConfig(
        name="internal", mode="isolated", cidr="10.10.0.0/24", gateway="10.10.0.2"
    ),
    "network-isolated-mtu": lambda: NetworkConfig(
        name="jumbo", mode="isolated", cidr="10.10.1.0/24", mtu=9000
    ),
    "network-bridge": lambda: NetworkConfig(name="lan", mode="bridge", bridge="br0"),
}

SNAPSHOTS: dict[str, Callable[[], SnapshotConfig]] = {
    "snapshot-internal": lambda: SnapshotConfig(name="patched-20251125", description="patched"),
    "snapshot-memory": lambda: SnapshotConfig(name="live", memory=True),
    "snapshot-external": lambda: SnapshotConfig(
        name="before-upgrade",
        disks=(
            SnapshotDisk(target="vda", file="/var/lib/libvirt/images/root.before-upgrade"),
            SnapshotDisk(target="sda", mode="no"),
        ),
    ),
}


def _all_documents() -> dict[str, Callable[[], str]]:
    docs: dict[str, Callable[[], str]] = {}
    for table in (DOMAINS, VOLUMES, NETWORKS, SNAPSHOTS):
        for name, make in table.items():
            docs[name] = lambda make=make: make().to_xml()  # type: ignore[misc]
    return docs


DOCUMENTS = _all_documents()


@pytest.fixture
def test_conn() -> Iterator[libvirt.virConnect]:
    """libvirt's in-process test driver (one state per process, shared by the tests)."""
    conn = libvirt.open("test:///default")
    try:
        yield conn
    finally:
        conn.close()


# --------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_document_matches_its_golden_file(name: str) -> None:
    produced = DOCUMENTS[name]()
    golden = GOLDEN_DIR / f"{name}.xml"
    if REGEN:
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        golden.write_text(produced)
    assert golden.exists(), f"{golden} missing: run with VMFLEET_REGEN_GOLDEN=1"
    expected = ET.canonicalize(golden.read_text(), strip_text=True)
    assert ET.canonicalize(produced, strip_text=True) == expected


def test_no_golden_file_is_left_over() -> None:
    left_over = {p.stem for p in GOLDEN_DIR.glob("*.xml")} - set(DOCUMENTS)
    assert not left_over


# --------------------------------------------------------------------------- libvirt accepts


@pytest.mark.parametrize("name", sorted(set(DOMAINS) - {"domain-passt"}))
def test_domain_is_accepted_by_libvirt(test_conn: libvirt.virConnect, name: str) -> None:
    config = DOMAINS[name]()
    domain = test_conn.defineXMLFlags(config.to_xml(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    info = parse_domain(domain.XMLDesc())
    assert info.name == config.name
    assert [d.target for d in info.disks] == [d.target for d in config.disks]
    assert info.owner == config.owner
    # The test driver drops <qemu:commandline>, so only libvirt-native NICs come back here.
    assert [n.mac for n in info.nics] == [n.mac for n in config.nics if not n.is_slirp]


def test_passt_domain_passes_the_schema_and_debian_disables_the_backend(
    test_conn: libvirt.virConnect,
) -> None:
    """Debian 12's libvirt 9.0 carries a patch turning passt off: the schema accepts the
    document, the parser refuses the backend. Anywhere else the domain must define. Where
    the backend is refused, the rest of the document must still be accepted."""
    xml = DOMAINS["domain-passt"]().to_xml()
    backend = '<backend type="passt" />'
    assert backend in xml
    if _refusal(test_conn, xml) is None:
        return  # this libvirt has passt: the whole document defines
    assert "'backend': 'passt'" in (_refusal(test_conn, xml) or "")
    # the same document without the backend element: the only thing refused was passt
    assert _refusal(test_conn, xml.replace(backend, "")) is None


def _refusal(conn: libvirt.virConnect, xml: str) -> str | None:
    try:
        conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    except libvirt.libvirtError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("name", sorted(VOLUMES))
def test_volume_is_accepted_by_libvirt(test_conn: libvirt.virConnect, name: str) -> None:
    config = VOLUMES[name]()
    pool = test_conn.storagePoolLookupByName("default-pool")
    # The test driver does not support VIR_STORAGE_VOL_CREATE_VALIDATE; it parses strictly.
    volume = pool.createXML(config.to_xml(), 0)
    root = ET.fromstring(volume.XMLDesc())
    assert root.findtext("name") == config.name
    assert root.findtext("capacity") == str(config.capacity_bytes)
    assert root.find("target/format").get("type") == config.format  # type: ignore[union-attr]
    if config.backing is not None:
        assert root.findtext("backingStore/path") == config.backing.path


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_is_accepted_by_libvirt(test_conn: libvirt.virConnect, name: str) -> None:
    config = NETWORKS[name]()
    network = test_conn.networkDefineXMLFlags(config.to_xml(), libvirt.VIR_NETWORK_DEFINE_VALIDATE)
    root = ET.fromstring(network.XMLDesc())
    assert root.findtext("name") == config.name
    hosts = [(h.get("mac"), h.get("ip")) for h in root.iterfind("ip/dhcp/host")]
    assert hosts == [(h.mac, h.ip) for h in config.hosts]


@pytest.mark.parametrize("name", sorted(SNAPSHOTS))
def test_snapshot_is_accepted_by_libvirt(test_conn: libvirt.virConnect, name: str) -> None:
    config = SNAPSHOTS[name]()
    # test:///default is one state per process: snapshot a domain of our own.
    domain_config = DomainConfig(
        name=f"snap-{name}",
        domain_type="qemu",
        memory_mib=64,
        vcpus=1,
        disks=(
            DiskConfig(target="vda", source=FileSource(path="/guest/root.qcow2")),
            replace(SEED, source=None),
        ),
    )
    domain = test_conn.defineXML(domain_config.to_xml())
    if config.memory:
        domain.create()
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE
    if config.disk_only:
        # The test driver has internal snapshots only. Schema validation runs first, so
        # "unsupported: must be internal" means the document itself was accepted.
        with pytest.raises(libvirt.libvirtError) as raised:
            domain.snapshotCreateXML(config.to_xml(), flags)
        assert raised.value.get_error_code() == libvirt.VIR_ERR_CONFIG_UNSUPPORTED
        return
    snapshot = domain.snapshotCreateXML(config.to_xml(), flags)
    root = ET.fromstring(snapshot.getXMLDesc())
    assert root.findtext("name") == config.name
    assert root.find("memory").get("snapshot") == ("internal" if config.memory else "no")  # type: ignore[union-attr]


# --------------------------------------------------------------------------- escaping


def _hostile_domain() -> DomainConfig:
    return _domain(
        name=f"vmftest-{HOSTILE}",
        uuid=None,
        description=HOSTILE,
        disks=(
            DiskConfig(target="vda", source=VolumeSource(pool=f"p{HOSTILE}", volume=HOSTILE)),
            DiskConfig(target="vdb", source=FileSource(path=f"/tmp/{HOSTILE}.qcow2"), serial="s"),
        ),
        nics=(NicConfig(mac="52:54:00:12:34:10", attachment=NetworkAttachment(network=HOSTILE)),),
        serial_log_path=f"/tmp/{HOSTILE}.log",
        kernel_boot=KernelBoot(kernel=f"/k{HOSTILE}", cmdline=f"x={HOSTILE}"),
        owner=OwnerMetadata(fleet=HOSTILE, vm=HOSTILE, template=HOSTILE, index=3, spec_hash="h"),
    )


def test_hostile_values_come_out_escaped_and_round_trip(test_conn: libvirt.virConnect) -> None:
    config = _hostile_domain()
    xml = config.to_xml()
    assert "]]>" not in xml and "<>" not in xml and "&]" not in xml
    expected_disks = [(d.target, d.source) for d in config.disks]
    for document in (xml, test_conn.defineXML(xml).XMLDesc()):
        info = parse_domain(document)
        assert info.name == config.name
        assert [(d.target, d.source) for d in info.disks] == expected_disks
        assert info.nics[0].source == HOSTILE
        assert info.kernel_boot == config.kernel_boot
        assert info.owner == config.owner
        assert ET.fromstring(document).findtext("description") == HOSTILE


@pytest.mark.parametrize(
    "document",
    [
        lambda: VolumeConfig(name=HOSTILE, capacity_bytes=1, backing=BackingStore(path=HOSTILE)),
        lambda: NetworkConfig(
            name=HOSTILE,
            mode="nat",
            cidr="10.0.0.0/24",
            domain=HOSTILE,
            hosts=(DhcpHost(mac="52:54:00:00:00:01", ip="10.0.0.5", name=HOSTILE),),
        ),
        lambda: SnapshotConfig(
            name=HOSTILE, description=HOSTILE, disks=(SnapshotDisk(target="vda", file=HOSTILE),)
        ),
    ],
    ids=["volume", "network", "snapshot"],
)
def test_hostile_values_in_other_documents_are_escaped(
    document: Callable[[], VolumeConfig | NetworkConfig | SnapshotConfig],
) -> None:
    xml = document().to_xml()
    assert "]]>" not in xml
    root = ET.fromstring(xml)
    values = [e.text for e in root.iter()] + [v for e in root.iter() for v in e.attrib.values()]
    assert HOSTILE in values


def test_control_characters_are_refused() -> None:
    with pytest.raises(ValueError, match="control character"):
        _domain(description="bell\x07").to_xml()


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: NicConfig(mac="52:54:00:12:34", attachment=UserAttachment()), "MAC"),
        (lambda: PortForward(host_port=2222, guest_port=22, host_address="0.0.0.0"), "127"),
        (lambda: PortForward(host_port=2222, guest_port=22, host_address="10.0.0.1"), "127"),
        (lambda: PortForward(host_port=0, guest_port=22), "range"),
        (lambda: PortForward(host_port=2222, guest_port=65536), "range"),
        (lambda: DiskConfig(target="vdb", source=None), "needs a source"),
        (lambda: DiskConfig(target="vdb", source=None, device="cdrom"), "virtio"),
        (lambda: DiskConfig(target="sda1", source=FileSource(path="/x")), "target"),
        (
            lambda: DiskConfig(target="vda", source=FileSource(path="/x"), io="native"),
            "native",
        ),
        (lambda: _domain(max_vcpus=1), "max_vcpus"),
        (lambda: _domain(current_memory_mib=4096), "current_memory"),
        (lambda: _domain(disks=(ROOT, ROOT)), "duplicate disk"),
        (
            lambda: _domain(
                nics=(
                    NicConfig(mac="52:54:00:00:00:01", attachment=UserAttachment()),
                    NicConfig(mac="52:54:00:00:00:01", attachment=UserAttachment()),
                )
            ),
            "duplicate MAC",
        ),
        (lambda: VolumeConfig(name="a/b", capacity_bytes=1), "volume name"),
        (
            lambda: VolumeConfig(
                name="a", capacity_bytes=1, format="raw", backing=BackingStore(path="/b")
            ),
            "backing",
        ),
        (lambda: NetworkConfig(name="n", mode="bridge"), "bridge name"),
        (lambda: NetworkConfig(name="n", mode="nat"), "cidr"),
        (
            lambda: NetworkConfig(
                name="n", mode="nat", cidr="10.0.0.0/24", dhcp_range=("10.0.0.2", "10.0.1.9")
            ),
            "not in",
        ),
        (
            lambda: NetworkConfig(
                name="n",
                mode="nat",
                cidr="10.0.0.0/24",
                hosts=(DhcpHost(mac="52:54:00:00:00:01", ip="10.9.0.5"),),
            ),
            "not in",
        ),
        (lambda: SnapshotDisk(target="vda"), "needs a file"),
        (lambda: SnapshotDisk(target="vda", mode="internal", file="/x"), "needs a file"),
        (
            lambda: SnapshotConfig(
                name="s", memory=True, disks=(SnapshotDisk(target="vda", file="/x"),)
            ),
            "memory",
        ),
    ],
)
def test_invalid_configs_are_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_macs_are_stored_lowercase() -> None:
    assert (
        NicConfig(mac="52:54:00:AB:CD:EF", attachment=UserAttachment()).mac == "52:54:00:ab:cd:ef"
    )


def test_network_gateway_defaults_to_first_host() -> None:
    assert NetworkConfig(name="n", mode="nat", cidr="10.1.2.0/24").gateway_address == "10.1.2.1"


# --------------------------------------------------------------------------- reading back


def test_parse_reads_slirp_nics_and_their_forwards() -> None:
    config = DOMAINS["domain-slirp-q35"]()
    info = parse_domain(config.to_xml())
    by_mac = {nic.mac: nic for nic in info.nics}
    assert by_mac["52:54:00:12:34:10"].kind == "slirp"
    assert by_mac["52:54:00:12:34:10"].forwards == (SSH_FORWARD,)
    assert [f.host_port for f in by_mac["52:54:00:12:34:12"].forwards] == [2223, 8080, 5353]
    assert by_mac["52:54:00:12:34:12"].forwards[2].proto == "udp"
    assert by_mac["52:54:00:12:34:11"].kind == "network"
    assert by_mac["52:54:00:12:34:11"].source == "lab"


def test_parse_reads_passt_forwards() -> None:
    info = parse_domain(DOMAINS["domain-passt"]().to_xml())
    assert info.nics[0].kind == "user"
    assert info.nics[0].forwards == (SSH_FORWARD,)


def test_parse_reads_key_value_device_arguments() -> None:
    """Older or hand-written domains may give the NIC as `-device driver,key=val`."""
    xml = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
      <name>old</name>
      <qemu:commandline>
        <qemu:arg value='-netdev'/>
        <qemu:arg value='user,id=n0,hostfwd=tcp:127.0.0.1:2200-:22,hostfwd=tcp::80-:80'/>
        <qemu:arg value='-device'/>
        <qemu:arg value='e1000,netdev=n0,mac=52:54:00:AA:BB:CC'/>
      </qemu:commandline>
    </domain>"""
    (nic,) = parse_domain(xml).nics
    assert nic.mac == "52:54:00:aa:bb:cc"
    assert nic.model == "e1000"
    # An empty host address is QEMU's "any address": not a forward vmfleet wrote.
    assert [f.host_port for f in nic.forwards] == [2200]


def test_parse_of_a_domain_without_our_metadata_has_no_owner() -> None:
    info = parse_domain("<domain type='qemu'><name>other</name></domain>")
    assert info.owner is None
    assert info.disks == () and info.nics == () and info.kernel_boot is None


@pytest.mark.parametrize("text", ["not xml", "<network><name>x</name></network>"])
def test_parse_refuses_what_is_not_a_domain(text: str) -> None:
    with pytest.raises(HypervisorError):
        parse_domain(text)


# --------------------------------------------------------------------------- real daemon


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listeners(port: int) -> str:
    return subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.e2e
@pytest.mark.parametrize("machine", ["q35", "pc"])
def test_slirp_port_forward_listens_on_loopback(machine: str) -> None:
    """On qemu:///system (TCG), a slirp NIC's forward is a QEMU listener on 127.0.0.1."""
    try:
        conn = libvirt.open("qemu:///system")
    except libvirt.libvirtError as exc:
        pytest.skip(f"qemu:///system unreachable (run `make host`): {exc}")
    port = _free_loopback_port()
    config = DomainConfig(
        name=f"vmftest-slirp-{uuid.uuid4().hex[:8]}",
        domain_type="qemu",
        machine=machine,
        memory_mib=96,
        vcpus=1,
        nics=(
            NicConfig(
                mac="52:54:00:fe:00:01",
                attachment=UserAttachment(forwards=(PortForward(host_port=port, guest_port=22),)),
            ),
            NicConfig(mac="52:54:00:fe:00:02", attachment=UserAttachment()),
        ),
    )
    domain = conn.defineXMLFlags(config.to_xml(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    try:
        domain.create()
        deadline = time.monotonic() + 30
        while "qemu" not in _listeners(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        listeners = _listeners(port)
        assert f"127.0.0.1:{port}" in listeners and "qemu" in listeners
        (nic, bare) = (n for n in parse_domain(domain.XMLDesc()).nics if n.kind == "slirp")
        assert nic.forwards == (PortForward(host_port=port, guest_port=22),)
        assert bare.mac == "52:54:00:fe:00:02"
    finally:
        if domain.isActive():
            domain.destroy()
        domain.undefine()
        conn.close()


@pytest.mark.e2e
def test_linked_clone_and_snapshots_on_the_real_daemon() -> None:
    """qemu:///system: a qcow2 overlay on a base volume, then an internal snapshot and an
    external disk-only one of the (shut off) domain using it."""
    try:
        conn = libvirt.open("qemu:///system")
    except libvirt.libvirtError as exc:
        pytest.skip(f"qemu:///system unreachable (run `make host`): {exc}")
    tag = uuid.uuid4().hex[:8]
    pool = conn.storagePoolLookupByName("default")
    created: list[libvirt.virStorageVol] = []
    domain = None
    overlay = None
    try:
        base = pool.createXML(
            VolumeConfig(name=f"vmftest-base-{tag}", capacity_bytes=1 << 26).to_xml()
        )
        created.append(base)
        clone_config = VolumeConfig(
            name=f"vmftest-clone-{tag}",
            capacity_bytes=1 << 27,
            backing=BackingStore(path=base.path()),
        )
        clone = pool.createXML(clone_config.to_xml())
        created.append(clone)
        info = subprocess.run(
            ["qemu-img", "info", "--output=json", "-U", clone.path()],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f'"backing-filename": "{base.path()}"' in info
        assert '"compat": "1.1"' in info

        config = DomainConfig(
            name=f"vmftest-snap-{tag}",
            domain_type="qemu",
            memory_mib=96,
            vcpus=1,
            disks=(
                DiskConfig(target="vda", source=VolumeSource(pool="default", volume=clone.name())),
            ),
        )
        domain = conn.defineXMLFlags(config.to_xml(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE
        internal = SnapshotConfig(name="internal", description="before")
        domain.snapshotCreateXML(internal.to_xml(), flags)
        domain.snapshotLookupByName("internal").delete()

        overlay = str(Path(clone.path()).with_name(f"vmftest-clone-{tag}.external"))
        external = SnapshotConfig(
            name="external", disks=(SnapshotDisk(target="vda", file=overlay),)
        )
        assert external.disk_only
        domain.snapshotCreateXML(
            external.to_xml(), flags | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        )
        (disk,) = parse_domain(domain.XMLDesc()).disks
        assert disk.source == FileSource(path=overlay)
    finally:
        if domain is not None:
            for snapshot in domain.listAllSnapshots():
                snapshot.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
            domain.undefine()
        if overlay is not None:
            Path(overlay).unlink(missing_ok=True)
        pool.refresh()
        for volume in reversed(created):
            volume.delete()
        conn.close()


def test_aarch64_gets_acpi_with_uefi_only() -> None:
    # Without ACPI the `virt` guest has no power button and ignores shutdown requests;
    # libvirt refuses ACPI on aarch64 without UEFI.
    def acpi(firmware: str) -> bool:
        config = _domain(arch="aarch64", machine="virt", cpu_model="cortex-a57", firmware=firmware)
        return ET.fromstring(config.to_xml()).find("features/acpi") is not None

    assert acpi("uefi") and not acpi("bios")
