"""LibvirtHost on libvirt's in-process test driver: typed reads, ownership refusals, errors.

Each test gets a fresh host from its own test-driver node file (`test:///<file>`); the tests
that need a domain made behind our back use `test:///default` (state shared per process, so
they use unique names) and create it with plain libvirt.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

import vmfleet.drivers.libvirt as libvirt_driver
from vmfleet.drivers.libvirt import (
    PROBE_DONE_MARKER,
    DomainState,
    LibvirtHost,
    ShutdownResult,
    probe_payload,
)
from vmfleet.drivers.metadata import NAMESPACE, OwnerMetadata
from vmfleet.errors import HostUnreachableError, HypervisorError, NotOwnedError

MiB = 1024 * 1024
FLEET = "vmftest"

NODE_XML = """<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>4</active><nodes>1</nodes>
       <sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>
  <memory>4194304</memory>
  <domain type='test'>
    <name>vmftest-foreign</name>
    <memory unit='MiB'>128</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
    <devices>
      <interface type='network'>
        <mac address='52:54:00:aa:bb:cc'/><source network='default'/>
      </interface>
    </devices>
  </domain>
  <network>
    <name>default</name>
    <bridge name='virbr0'/>
    <ip address='192.168.122.1' netmask='255.255.255.0'/>
  </network>
  <pool type='dir'>
    <name>pool</name>
    <target><path>/pool</path></target>
    <volume type='file'>
      <name>foreign.img</name><capacity unit='MiB'>10</capacity>
    </volume>
  </pool>
</node>
"""


def owner(vm: str, *, fleet: str = FLEET, index: int | None = 0) -> OwnerMetadata:
    return OwnerMetadata(fleet=fleet, vm=vm, template="web", index=index, spec_hash="h1")


def domain_xml(name: str, *, fleet: str | None = FLEET, memory_mib: int = 64) -> str:
    """A minimal test-driver domain; with `fleet=None` it carries no vmfleet metadata."""
    metadata = "" if fleet is None else f"<metadata>{owner(name, fleet=fleet).to_xml()}</metadata>"
    return f"""<domain type='test'>
  <name>{name}</name>{metadata}
  <memory unit='MiB'>{memory_mib}</memory>
  <currentMemory unit='MiB'>{memory_mib}</currentMemory>
  <vcpu current='1'>2</vcpu>
  <os><type>hvm</type></os>
</domain>"""


def network_xml(name: str, *, owned: bool = True, fleet: str = FLEET) -> str:
    metadata = (
        f"<metadata><vmfleet:network xmlns:vmfleet='{NAMESPACE}'>"
        f"<vmfleet:fleet>{fleet}</vmfleet:fleet></vmfleet:network></metadata>"
        if owned
        else ""
    )
    return f"""<network><name>{name}</name>{metadata}
  <bridge name='vmfbr-{name[-4:]}'/>
  <ip address='10.99.0.1' netmask='255.255.255.0'/>
</network>"""


def unique(prefix: str = "vmftest") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def host(tmp_path: Path) -> Iterator[LibvirtHost]:
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    with LibvirtHost(f"test://{node}", name="node-a") as opened:
        yield opened


# --- connecting ---------------------------------------------------------------------------------


def test_dead_unix_socket_fails_fast_with_host_and_libvirt_message() -> None:
    with pytest.raises(HostUnreachableError) as caught:
        LibvirtHost.open("qemu+unix:///system?socket=/nonexistent", name="node-z", timeout=5)
    message = str(caught.value)
    assert caught.value.host == "node-z"
    assert message.startswith("host node-z: ")
    assert "/nonexistent" in message
    assert "No such file or directory" in message


def test_silent_peer_times_out_as_unreachable(tmp_path: Path) -> None:
    """A socket that accepts and never answers: the open must not hang."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        with pytest.raises(HostUnreachableError, match=r"no answer within 0.5 s"):
            LibvirtHost.open(f"qemu+unix:///system?socket={path}", name="mute", timeout=0.5)
    finally:
        server.close()


def test_constructing_does_not_connect() -> None:
    lazy = LibvirtHost("qemu+unix:///system?socket=/nonexistent", name="lazy")
    with pytest.raises(HostUnreachableError):
        lazy.list_domains()


def test_close_is_idempotent_and_the_next_call_reconnects(host: LibvirtHost) -> None:
    assert host.get_domain("vmftest-foreign") is not None
    host.close()
    host.close()
    info = host.get_domain("vmftest-foreign")
    assert info is not None
    assert info.name == "vmftest-foreign"


def test_remote_is_decided_by_the_uri_host() -> None:
    assert LibvirtHost("qemu+ssh://root@node-b/system").remote
    assert not LibvirtHost("qemu:///system").remote
    assert not LibvirtHost("test:///default").remote


# --- capabilities -------------------------------------------------------------------------------


def test_capabilities_of_the_test_driver(host: LibvirtHost) -> None:
    caps = host.capabilities()
    assert caps.arch == "i686"
    assert caps.cpus == 4
    assert caps.memory_bytes == 4 * 1024 * MiB
    assert caps.hostname
    assert caps.domain_types() == ("test",)
    assert {g.os_type for g in caps.guests} == {"hvm", "xen"}
    assert caps.guests[0].emulator == "/usr/bin/test-hv"
    assert caps.kvm_usable is False  # no kvm domain type: no probe needed
    assert caps.libvirt_version.count(".") == 2


def test_capabilities_without_probe_leave_kvm_unknown(host: LibvirtHost) -> None:
    assert host.capabilities(probe_kvm=False).kvm_usable is None
    assert host.probe_kvm() is False
    assert host.capabilities(probe_kvm=False).kvm_usable is False  # cached


def test_probe_payload_is_a_multiboot_image_with_its_markers() -> None:
    image = probe_payload()
    magic, flags, checksum, header, load, load_end, bss_end, entry = struct.unpack(
        "<8I", image[:32]
    )
    assert magic == 0x1BADB002
    assert (magic + flags + checksum) & 0xFFFFFFFF == 0
    assert flags & 0x10000  # addresses in the header
    assert header == load == 0x100000
    assert load_end == load + len(image)
    assert bss_end == 0
    assert entry == load + 0x20
    assert b"Hdr" not in image[0x200:0x210]  # must not look like a Linux bzImage
    for marker in (b"VMFLEET-PROBE-32\n", b"VMFLEET-PROBE-64\n", PROBE_DONE_MARKER.encode()):
        assert marker in image
    assert probe_payload(rounds=1) != image  # the copy count is in the code


@pytest.mark.skipif(
    not (shutil.which("as") and shutil.which("objcopy")), reason="needs GNU binutils"
)
def test_probe_payload_listing_assembles_to_the_same_bytes(tmp_path: Path) -> None:
    listing = Path(libvirt_driver.__file__).parent / "probe_payload.S"
    obj, image = tmp_path / "payload.o", tmp_path / "payload.bin"
    subprocess.run(["as", "--32", "-o", str(obj), str(listing)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(obj), str(image)], check=True)
    assert image.read_bytes() == probe_payload()


# --- domains: reading ---------------------------------------------------------------------------


def test_unowned_domain_reads_with_owner_none(host: LibvirtHost) -> None:
    info = host.get_domain("vmftest-foreign")
    assert info is not None
    assert info.owner is None
    assert info.state is DomainState.RUNNING
    assert info.active
    assert info.memory_bytes == info.max_memory_bytes == 128 * MiB
    assert info.vcpus == info.max_vcpus == 1
    assert info.persistent
    assert not info.autostart
    assert info.uptime_seconds is None  # only known for local qemu:///system


def test_missing_domain_is_none(host: LibvirtHost) -> None:
    assert host.get_domain("vmftest-nope") is None


def test_define_returns_typed_info_with_owner(host: LibvirtHost) -> None:
    info = host.define(domain_xml("vmftest-a"))
    assert info.name == "vmftest-a"
    assert info.owner == owner("vmftest-a")
    assert info.state is DomainState.SHUTOFF
    assert not info.active
    assert info.vcpus == 1
    assert info.max_vcpus == 2
    assert info.memory_bytes == 64 * MiB
    assert len(info.uuid) == 36


def test_list_domains_filters_by_fleet_and_sorts(host: LibvirtHost) -> None:
    host.define(domain_xml("vmftest-b"))
    host.define(domain_xml("vmftest-a"))
    host.define(domain_xml("vmftest-other", fleet="otherfleet"))
    assert [d.name for d in host.list_domains()] == [
        "vmftest-a",
        "vmftest-b",
        "vmftest-foreign",
        "vmftest-other",
    ]
    assert [d.name for d in host.list_domains(fleet=FLEET)] == ["vmftest-a", "vmftest-b"]
    assert host.list_domains(fleet="nobody") == []


def test_domain_xml_live_and_inactive(host: LibvirtHost) -> None:
    host.define(domain_xml("vmftest-a"))
    assert "<name>vmftest-a</name>" in host.domain_xml("vmftest-a")
    assert NAMESPACE in host.domain_xml("vmftest-a", inactive=True)
    with pytest.raises(HypervisorError, match="vm vmftest-nope: read domain XML: no such"):
        host.domain_xml("vmftest-nope")


# --- domains: changing --------------------------------------------------------------------------


def test_lifecycle_of_an_owned_domain(host: LibvirtHost) -> None:
    name = "vmftest-life"
    host.define(domain_xml(name))
    host.start(name)
    host.start(name)  # already running: nothing to do

    def state() -> DomainState:
        info = host.get_domain(name)
        assert info is not None
        return info.state

    assert state() is DomainState.RUNNING
    host.suspend(name)
    assert state() is DomainState.PAUSED
    host.resume(name)
    host.reboot(name)
    assert state() is DomainState.RUNNING
    assert host.shutdown(name, timeout=5) is ShutdownResult.GRACEFUL
    assert host.shutdown(name, timeout=5) is ShutdownResult.ALREADY_OFF
    host.start(name)
    host.destroy(name)
    host.destroy(name)  # already off: nothing to do
    assert state() is DomainState.SHUTOFF
    assert host.undefine(name) is True
    assert host.undefine(name) is False
    assert host.get_domain(name) is None


def test_a_uefi_domain_is_undefined_on_a_driver_without_nvram(host: LibvirtHost) -> None:
    # UEFI domains get VIR_DOMAIN_UNDEFINE_NVRAM (qemu refuses to undefine them without it);
    # the test driver keeps no NVRAM and refuses the flag, which must not stop the undefine.
    name = "vmftest-efi"
    host.define(domain_xml(name).replace("<os>", "<os firmware='efi'>"))
    assert host.undefine(name) is True
    assert host.get_domain(name) is None


def test_memory_vcpus_and_autostart(host: LibvirtHost) -> None:
    name = "vmftest-size"
    host.define(domain_xml(name, memory_mib=64))
    host.start(name)
    host.set_memory(name, 48, live=True, config=True)
    host.set_vcpus(name, 2, live=True, config=True)
    host.set_autostart(name, True)
    info = host.get_domain(name)
    assert info is not None
    assert (info.memory_bytes, info.vcpus, info.autostart) == (48 * MiB, 2, True)
    assert "<currentMemory unit='KiB'>49152" in host.domain_xml(name, inactive=True)
    with pytest.raises(ValueError, match="live and/or config"):
        host.set_memory(name, 32, live=False, config=False)


def test_redefine_of_our_domain_is_allowed(host: LibvirtHost) -> None:
    host.define(domain_xml("vmftest-a", memory_mib=64))
    info = host.define(domain_xml("vmftest-a", memory_mib=96))
    assert info.max_memory_bytes == 96 * MiB


def test_define_refuses_a_name_held_by_an_unowned_domain(host: LibvirtHost) -> None:
    before = host.domain_xml("vmftest-foreign")
    with pytest.raises(NotOwnedError, match="vm vmftest-foreign: define: refused"):
        host.define(domain_xml("vmftest-foreign"))
    assert host.domain_xml("vmftest-foreign") == before


def test_define_refuses_a_name_held_by_another_fleet(host: LibvirtHost) -> None:
    host.define(domain_xml("vmftest-a", fleet="otherfleet"))
    with pytest.raises(NotOwnedError, match="belongs to fleet 'otherfleet'"):
        host.define(domain_xml("vmftest-a", fleet=FLEET))


def test_define_refuses_xml_without_our_metadata(host: LibvirtHost) -> None:
    with pytest.raises(ValueError, match="carries no vmfleet metadata"):
        host.define(domain_xml("vmftest-bare", fleet=None))
    assert host.get_domain("vmftest-bare") is None


def test_define_reports_invalid_xml_as_hypervisor_error(host: LibvirtHost) -> None:
    bad = domain_xml("vmftest-bad").replace("<os>", "<bogus/><os>")
    with pytest.raises(HypervisorError, match=r"vm vmftest-bad: define: .*valid") as e:
        host.define(bad)
    assert isinstance(e.value.__cause__, libvirt.libvirtError)


def test_operations_on_a_missing_domain_name_it(host: LibvirtHost) -> None:
    with pytest.raises(HypervisorError, match="vm vmftest-ghost: start: no such domain"):
        host.start("vmftest-ghost")


def test_libvirt_failures_carry_host_vm_and_cause(host: LibvirtHost) -> None:
    host.define(domain_xml("vmftest-off"))
    with pytest.raises(HypervisorError) as caught:
        host.suspend("vmftest-off")  # not running
    err = caught.value
    assert (err.host, err.vm) == ("node-a", "vmftest-off")
    assert str(err).startswith("host node-a: vm vmftest-off: suspend: ")
    assert isinstance(err.__cause__, libvirt.libvirtError)
    assert not isinstance(err, HostUnreachableError)


# --- ownership refusals on a domain made behind our back (shared test:///default) ----------------

MUTATIONS: dict[str, Callable[[LibvirtHost, str], Any]] = {
    "start": lambda h, n: h.start(n),
    "shutdown": lambda h, n: h.shutdown(n, timeout=1),
    "destroy": lambda h, n: h.destroy(n),
    "reboot": lambda h, n: h.reboot(n),
    "suspend": lambda h, n: h.suspend(n),
    "resume": lambda h, n: h.resume(n),
    "undefine": lambda h, n: h.undefine(n),
    "set_memory": lambda h, n: h.set_memory(n, 32, live=True, config=True),
    "set_vcpus": lambda h, n: h.set_vcpus(n, 1, live=False, config=True),
    "set_autostart": lambda h, n: h.set_autostart(n, True),
    "define": lambda h, n: h.define(domain_xml(n)),
    "agent_command": lambda h, n: h.agent_command(n, {"execute": "guest-ping"}),
}


@pytest.fixture
def foreign_domain() -> Iterator[tuple[LibvirtHost, str]]:
    """A running domain defined directly with libvirt, without our metadata."""
    name = unique()
    conn = libvirt.open("test:///default")
    dom = conn.defineXML(domain_xml(name, fleet=None))
    dom.create()
    host = LibvirtHost("test:///default", name="shared")
    try:
        yield host, name
    finally:
        host.close()
        if dom.isActive():
            dom.destroy()
        dom.undefine()
        conn.close()


@pytest.mark.parametrize("operation", sorted(MUTATIONS))
def test_every_mutation_refuses_an_unowned_domain(
    foreign_domain: tuple[LibvirtHost, str], operation: str
) -> None:
    host, name = foreign_domain
    before = host.domain_xml(name)
    state_before = host.get_domain(name)
    with pytest.raises(NotOwnedError) as caught:
        MUTATIONS[operation](host, name)
    assert caught.value.vm == name
    assert caught.value.host == "shared"
    assert "vmfleet" in str(caught.value)
    assert host.domain_xml(name) == before
    assert host.get_domain(name) == state_before


def test_reads_work_on_unowned_domains(foreign_domain: tuple[LibvirtHost, str]) -> None:
    host, name = foreign_domain
    info = host.get_domain(name)
    assert info is not None
    assert info.owner is None
    assert name in [d.name for d in host.list_domains()]
    assert name not in [d.name for d in host.list_domains(fleet=FLEET)]
    assert host.interface_addresses(name) == {}


# --- storage ------------------------------------------------------------------------------------


def volume_xml(name: str, *, capacity: str = "10 MiB", fmt: str = "raw") -> str:
    amount, unit = capacity.split()
    return (
        f"<volume><name>{name}</name><capacity unit='{unit}'>{amount}</capacity>"
        f"<target><format type='{fmt}'/></target></volume>"
    )


def test_pool_info_and_volume_round_trip(host: LibvirtHost) -> None:
    pool = host.pool_info("pool")
    assert (pool.name, pool.path, pool.active) == ("pool", "/pool", True)
    assert pool.capacity > 0
    created = host.create_volume("pool", volume_xml("vmf-vmftest--a--root"))
    assert created.name == "vmf-vmftest--a--root"
    assert created.path == "/pool/vmf-vmftest--a--root"
    assert created.capacity == 10 * MiB
    assert created.format == "raw"
    assert host.get_volume("pool", created.name) == created
    assert host.volume_path("pool", created.name) == created.path
    assert [v.name for v in host.list_volumes("pool")] == ["foreign.img", created.name]
    assert host.delete_volume("pool", created.name) is True
    assert host.delete_volume("pool", created.name) is False
    assert host.get_volume("pool", created.name) is None


def test_volumes_without_our_prefix_are_refused(host: LibvirtHost) -> None:
    with pytest.raises(NotOwnedError, match=r"'foreign\.img': refused"):
        host.delete_volume("pool", "foreign.img")
    with pytest.raises(NotOwnedError):
        host.resize_volume("pool", "foreign.img", 20 * MiB)
    with pytest.raises(ValueError, match="lacks vmfleet's 'vmf-' prefix"):
        host.create_volume("pool", volume_xml("mine.img"))
    assert [v.name for v in host.list_volumes("pool")] == ["foreign.img"]


def test_pool_too_full_is_refused_with_sizes(host: LibvirtHost) -> None:
    available = host.pool_info("pool").available
    too_big = available // MiB + 1
    with pytest.raises(HypervisorError) as caught:
        host.create_volume("pool", volume_xml("vmf-vmftest--a--big", capacity=f"{too_big} MiB"))
    message = str(caught.value)
    assert "storage pool 'pool' is too full for vmf-vmftest--a--big" in message
    assert f"needs {too_big * MiB} bytes" in message
    assert f"{available} bytes" in message
    assert host.get_volume("pool", "vmf-vmftest--a--big") is None


def test_an_explicit_allocation_is_what_must_fit(host: LibvirtHost) -> None:
    """A thin volume bigger than the pool passes the check; libvirt would allocate nothing."""
    huge = host.pool_info("pool").available + MiB
    xml = (
        "<volume><name>vmf-vmftest--a--thin</name>"
        f"<capacity unit='bytes'>{huge}</capacity><allocation unit='bytes'>0</allocation>"
        "<target><format type='qcow2'/></target></volume>"
    )
    created = host.create_volume("pool", xml)
    assert (created.capacity, created.format) == (huge, "qcow2")


def test_missing_pool_is_an_error_unless_definition_is_asked(host: LibvirtHost) -> None:
    with pytest.raises(HypervisorError, match="storage pool 'vmftest-p' does not exist"):
        host.ensure_pool("vmftest-p", path="/vmftest-p")
    with pytest.raises(HypervisorError, match="does not exist"):
        host.list_volumes("vmftest-p")
    made = host.ensure_pool("vmftest-p", path="/vmftest-p", define_if_missing=True)
    assert (made.name, made.path, made.active, made.autostart) == (
        "vmftest-p",
        "/vmftest-p",
        True,
        True,
    )
    assert host.ensure_pool("vmftest-p") == host.pool_info("vmftest-p")


def test_upload_refuses_unprefixed_names_and_missing_files(
    host: LibvirtHost, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="prefix"):
        host.upload_volume("pool", "base.qcow2", tmp_path / "x", format="qcow2")
    with pytest.raises(HypervisorError, match="cannot read it"):
        host.upload_volume("pool", "vmf-vmftest--a--x", tmp_path / "missing", format="raw")


def test_failed_upload_leaves_no_volume_behind(host: LibvirtHost, tmp_path: Path) -> None:
    """The test driver cannot upload: the placeholder volume must be removed again."""
    image = tmp_path / "tiny.raw"
    image.write_bytes(b"\0" * 4096)
    with pytest.raises(HypervisorError, match=r"upload .* to volume 'vmf-vmftest--a--up'"):
        host.upload_volume("pool", "vmf-vmftest--a--up", image, format="raw")
    assert host.get_volume("pool", "vmf-vmftest--a--up") is None


# --- networks -----------------------------------------------------------------------------------


def test_ensure_network_defines_starts_and_is_idempotent(host: LibvirtHost) -> None:
    made = host.ensure_network(network_xml("vmftest-net"))
    assert (made.name, made.active, made.persistent, made.autostart) == (
        "vmftest-net",
        True,
        True,
        True,
    )
    assert (made.owned, made.fleet) == (True, FLEET)
    again = host.ensure_network(network_xml("vmftest-net"))
    assert again == made
    assert [n.name for n in host.list_networks()] == ["default", "vmftest-net"]
    assert host.remove_network("vmftest-net") is True
    assert host.remove_network("vmftest-net") is False
    assert host.get_network("vmftest-net") is None


def test_networks_not_ours_are_refused(host: LibvirtHost) -> None:
    default = host.get_network("default")
    assert default is not None
    assert (default.owned, default.fleet) == (False, None)
    with pytest.raises(NotOwnedError, match="'default': refused"):
        host.ensure_network(network_xml("default"))
    with pytest.raises(NotOwnedError):
        host.remove_network("default")
    with pytest.raises(ValueError, match="carries no vmfleet metadata"):
        host.ensure_network(network_xml("vmftest-bare", owned=False))
    assert host.get_network("default") == default


def test_dhcp_leases_failure_names_the_host(host: LibvirtHost) -> None:
    with pytest.raises(HypervisorError, match="host node-a: read DHCP leases of network"):
        host.dhcp_leases("default")  # the test driver has no DHCP
    with pytest.raises(HypervisorError, match="network 'vmftest-nonet' does not exist"):
        host.dhcp_leases("vmftest-nonet")


# --- guest channel ------------------------------------------------------------------------------


def test_interface_addresses_by_mac(host: LibvirtHost) -> None:
    addresses = host.interface_addresses("vmftest-foreign")
    assert list(addresses) == ["52:54:00:aa:bb:cc"]
    assert [ip.rsplit(".", 1)[0] for ip in addresses["52:54:00:aa:bb:cc"]] == ["192.168.122"]


def test_agent_on_a_driver_without_agents_raises(host: LibvirtHost) -> None:
    host.define(domain_xml("vmftest-a"))
    host.start("vmftest-a")
    with pytest.raises(
        HypervisorError, match=r"vm vmftest-a: guest agent command: .*not supported"
    ):
        host.agent_command("vmftest-a", {"execute": "guest-info"})
    with pytest.raises(HypervisorError, match="not supported"):
        host.agent_ping("vmftest-a")  # "cannot ask" is not "no answer"


# --- threads ------------------------------------------------------------------------------------


def test_one_host_shared_by_ten_threads(host: LibvirtHost) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(10)

    def worker(index: int) -> None:
        try:
            barrier.wait()
            for round_ in range(5):
                name = f"vmftest-t{index}-{round_}"
                host.define(domain_xml(name))
                host.start(name)
                assert host.get_domain(name) is not None
                host.destroy(name)
                assert host.undefine(name)
                host.list_domains(fleet=FLEET)
        except BaseException as err:  # collected and re-raised below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert host.list_domains(fleet=FLEET) == []
