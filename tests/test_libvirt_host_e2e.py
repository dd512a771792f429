"""LibvirtHost against the real libvirtd (qemu:///system): streams, pools, probes, real domains.

Everything made here is named `vmftest-...` / `vmf-vmftest--...` and removed again; the pool
that must be full lives on a small tmpfs mounted (and unmounted) by the test itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from vmfleet.drivers.libvirt import (
    DomainState,
    KeepAlive,
    LibvirtHost,
    ShutdownResult,
    event_loop_running,
)
from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.drivers.qemuimg import QemuImg, sha256
from vmfleet.errors import HostUnreachableError, HypervisorError

pytestmark = pytest.mark.e2e

URI = "qemu:///system"
POOL = "default"
POOL_PATH = "/var/lib/libvirt/images"
MiB = 1024 * 1024


def token() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def host() -> Iterator[LibvirtHost]:
    try:
        opened = LibvirtHost.open(URI, name="local", timeout=10)
    except HostUnreachableError as err:
        pytest.skip(f"no libvirtd answering on {URI}: {err}")
    with opened:
        opened.ensure_pool(POOL, path=POOL_PATH, define_if_missing=True)
        yield opened


@pytest.fixture
def volumes(host: LibvirtHost) -> Iterator[list[str]]:
    """Names appended here are deleted from the default pool after the test, newest first."""
    made: list[str] = []
    yield made
    for name in reversed(made):
        host.delete_volume(POOL, name)


def test_upload_then_overlay_with_backing_store(
    host: LibvirtHost, volumes: list[str], tmp_path: Path
) -> None:
    qemu = QemuImg()
    local = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(local), "4M"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 256k", str(local)], check=True,
                   capture_output=True)  # fmt: skip
    base_name = f"vmf-vmftest--{token()}--base"
    volumes.append(base_name)

    base = host.upload_volume(POOL, base_name, local, format="qcow2")

    assert base.format == "qcow2"
    assert base.capacity == 4 * MiB
    assert base.path == f"{POOL_PATH}/{base_name}"
    assert sha256(base.path) == sha256(local)  # the stream carried every byte

    overlay_name = f"vmf-vmftest--{token()}--root"
    volumes.append(overlay_name)
    overlay = host.create_volume(
        POOL,
        f"""<volume><name>{overlay_name}</name>
              <capacity unit='MiB'>8</capacity>
              <target><format type='qcow2'/></target>
              <backingStore><path>{base.path}</path><format type='qcow2'/></backingStore>
            </volume>""",
    )
    assert overlay.format == "qcow2"
    assert overlay.backing_path == base.path
    assert overlay.capacity == 8 * MiB
    info = qemu.info(overlay.path)
    assert (info.backing_file, info.backing_format) == (base.path, "qcow2")
    qemu.check(overlay.path)

    grown = host.resize_volume(POOL, overlay_name, 16 * MiB)
    assert grown.capacity == 16 * MiB

    assert host.delete_volume(POOL, overlay_name)
    assert host.delete_volume(POOL, base_name)
    names = {v.name for v in host.list_volumes(POOL)}
    assert not names & {overlay_name, base_name}


def test_boot_probe_itself_is_sound_under_tcg(host: LibvirtHost) -> None:
    probe = host.boot_probe(domain_type="qemu", timeout=60)
    assert probe.booted, probe.console
    assert "VMFLEET-PROBE-64" in probe.console
    assert_no_probe_leftovers(host)


def test_kvm_probe_answers_and_cleans_up(host: LibvirtHost) -> None:
    started = time.monotonic()
    usable = host.probe_kvm()
    took = time.monotonic() - started
    probe = host.last_kvm_probe
    shown = "" if probe is None else f"; console ends {probe.console[-60:]!r}, error {probe.error}"
    print(f"\nkvm probe on this machine: usable={usable} in {took:.1f} s{shown}")
    caps = host.capabilities(probe_kvm=False)
    if caps.arch != "x86_64" or "kvm" not in caps.domain_types():
        assert (usable, probe) == (False, None)  # no KVM offered: a no without booting
    else:
        assert probe is not None  # a probe really booted, and its boot is the answer
        assert probe.booted is usable
    if not os.path.exists("/dev/kvm"):
        assert usable is False  # no /dev/kvm: a KVM guest cannot have booted
    assert host.capabilities(probe_kvm=False).kvm_usable is usable  # cached
    assert_no_probe_leftovers(host)


def test_a_domain_type_libvirt_refuses_is_a_no_with_the_reason(host: LibvirtHost) -> None:
    probe = host.boot_probe(domain_type="xen", timeout=5)
    assert not probe.booted
    assert probe.error is not None
    assert "xen" in probe.error
    assert_no_probe_leftovers(host)


def assert_no_probe_leftovers(host: LibvirtHost, *, settle: float = 30.0) -> None:
    """No probe domain or volume stays. Other tests' `up` may be probing this host at the
    same moment: theirs end within seconds (a probe times out at 8 s), a leftover does not."""
    deadline = time.monotonic() + settle
    while True:
        left = [d.name for d in host.list_domains() if d.name.startswith("vmf-probe.")]
        left += [v.name for v in host.list_volumes(POOL) if "vmfleet-probe" in v.name]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left


def test_capabilities_of_the_real_host(host: LibvirtHost) -> None:
    caps = host.capabilities(probe_kvm=False)
    assert caps.arch == "x86_64"
    assert caps.cpus >= 1
    assert caps.memory_bytes > 256 * MiB
    assert "qemu" in caps.domain_types()
    x86 = next(g for g in caps.guests if g.arch == "x86_64")
    assert x86.emulator
    assert any(m.startswith("pc") for m in x86.machines)


def test_dead_socket_uri_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(HostUnreachableError, match="No such file or directory"):
        LibvirtHost.open("qemu+unix:///system?socket=/nonexistent", name="gone", timeout=30)
    assert time.monotonic() - started < 10  # not the 30 s timeout: the socket is simply absent


@pytest.fixture
def tiny_pool(host: LibvirtHost, tmp_path: Path) -> Iterator[str]:
    """A dir pool on an 8 MiB tmpfs mounted for this test only."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "vmftest-tiny", str(mountpoint)],
        check=True,
    )
    name = f"vmftest-tiny-{token()}"
    conn = libvirt.open(URI)
    try:
        host.ensure_pool(name, path=str(mountpoint), define_if_missing=True)
        yield name
    finally:
        try:
            pool = conn.storagePoolLookupByName(name)
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
            if pool.isActive():
                pool.destroy()
            pool.undefine()
        finally:
            conn.close()
            subprocess.run(["umount", str(mountpoint)], check=True)


def test_full_pool_is_refused_with_sizes(host: LibvirtHost, tiny_pool: str, tmp_path: Path) -> None:
    info = host.pool_info(tiny_pool, refresh=True)
    assert info.capacity <= 8 * MiB
    name = f"vmf-vmftest--{token()}--big"
    with pytest.raises(HypervisorError) as caught:
        host.create_volume(
            tiny_pool,
            f"<volume><name>{name}</name><capacity unit='MiB'>16</capacity></volume>",
        )
    message = str(caught.value)
    assert f"storage pool '{tiny_pool}' is too full for {name}" in message
    assert f"needs {16 * MiB} bytes (16.0 MiB)" in message
    assert f"{info.available} bytes" in message

    big = tmp_path / "big.raw"
    big.write_bytes(b"\1" * (9 * MiB))
    with pytest.raises(HypervisorError, match=r"too full .* needs 9437184 bytes"):
        host.upload_volume(tiny_pool, name, big, format="raw")
    assert host.list_volumes(tiny_pool) == []


def owned_domain_xml(name: str) -> str:
    owner = OwnerMetadata(fleet="vmftest", vm=name, template="e2e", index=None, spec_hash="e2e")
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <metadata>{owner.to_xml()}</metadata>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <devices>
    <serial type='pty'/>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>"""


def test_real_domain_lifecycle_and_forced_shutdown(host: LibvirtHost) -> None:
    name = f"vmftest-e2e-{token()}"
    try:
        defined = host.define(owned_domain_xml(name))
        assert defined.state is DomainState.SHUTOFF
        assert defined.owner is not None
        host.start(name)
        running = host.get_domain(name)
        assert running is not None
        assert running.state is DomainState.RUNNING
        assert running.uptime_seconds is not None
        assert 0 <= running.uptime_seconds < 120
        # No bootable disk and no OS: ACPI power-off is never answered, so it is forced.
        assert host.agent_ping(name) is False  # no agent channel: an explicit "no"
        assert host.shutdown(name, timeout=1) is ShutdownResult.FORCED
        assert host.undefine(name)
    finally:
        if host.get_domain(name) is not None:
            host.destroy(name)
            host.undefine(name)
    assert host.get_domain(name) is None


BRIDGE = '''#!{python}
"""stdin/stdout <-> libvirtd's unix socket: a stand-in remote host for qemu+ext:// URIs."""
import os, selectors, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect("/run/libvirt/libvirt-sock")
sel = selectors.DefaultSelector()
sel.register(0, selectors.EVENT_READ)
sel.register(sock, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        data = os.read(0, 65536) if key.fileobj == 0 else sock.recv(65536)
        if not data:
            sys.exit(0)
        if key.fileobj == 0:
            sock.sendall(data)
        else:
            os.write(1, data)
'''


def child_pids_running(script: Path) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(script).encode() in stat.read_bytes():
                found.append(int(stat.parent.name))
        except OSError:
            continue  # exited while we looked
    return found


def test_keepalive_detects_a_silent_remote_peer_and_the_next_call_reconnects(
    tmp_path: Path,
) -> None:
    """A remote URI gets keepalive; a peer that stops answering becomes HostUnreachableError."""
    bridge = tmp_path / "bridge"
    bridge.write_text(BRIDGE.format(python=sys.executable))
    bridge.chmod(0o755)
    uri = f"qemu+ext://vmftest-peer/system?command={bridge}"
    remote = LibvirtHost(uri, name="peer", keepalive=KeepAlive(interval=1, count=2))
    assert remote.remote
    with remote:
        remote.list_domains()
        assert event_loop_running()
        (pid,) = child_pids_running(bridge)
        # Signal through a pidfd: libvirt reaps the bridge when it drops the connection, and a
        # bare pid could by then name some other process.
        pidfd = os.pidfd_open(pid)
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGSTOP)  # the peer goes silent, socket open
            with pytest.raises(HostUnreachableError, match=r"host peer: .*connection lost"):
                remote.list_domains()
        finally:
            with contextlib.suppress(ProcessLookupError):  # already ended by libvirt: fine
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
        remote.list_domains()  # a fresh connection (and a fresh bridge)
