"""What libvirt keeps so a lost `.vmfleet/` loses no access: each VM's SSH host public key in
its domain metadata, read back into known_hosts; the generated login key, which is never in
libvirt, is not silently made anew (test driver, in-process)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from vmfleet.drivers import sshkeys
from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.engine import access, hostkeys
from vmfleet.engine.context import FleetContext
from vmfleet.spec.load import load
from vmfleet.state.store import Store

KEY = sshkeys.generate_ed25519().public


def test_the_host_public_key_travels_in_the_domain_metadata() -> None:
    owner = OwnerMetadata(fleet="f", vm="a", template="a", index=None, spec_hash="h", host_key=KEY)
    xml = f"<domain><name>a</name><metadata>{owner.to_xml()}</metadata></domain>"
    assert OwnerMetadata.from_domain_xml(xml) == owner


def test_a_host_key_that_is_not_a_public_key_line_is_ignored() -> None:
    owner = OwnerMetadata(fleet="f", vm="a", template="a", index=None, spec_hash="h", host_key="x")
    xml = f"<domain><name>a</name><metadata>{owner.to_xml()}</metadata></domain>"
    read = OwnerMetadata.from_domain_xml(xml)
    assert read is not None and read.host_key is None


def test_known_hosts_is_rebuilt_from_libvirt_after_the_state_dir_is_lost(
    fleet_file: Callable[[str], Path], tmp_path: Path
) -> None:
    fleet = f"kh{uuid.uuid4().hex[:6]}"
    vm = f"a{fleet}"
    path = fleet_file(
        f"""
fleet: {fleet}
hosts: {{local: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}}}
vms: {{{vm}: {{}}}}
"""
    )
    ctx = FleetContext(loaded=load(path), store=Store(tmp_path / "s"), state_dir=tmp_path / "s")
    host = ctx.host("local")
    owner = OwnerMetadata(fleet=fleet, vm=vm, template=vm, index=None, spec_hash="h", host_key=KEY)
    host.define(
        f"<domain type='test'><name>{vm}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        f"<metadata>{owner.to_xml()}</metadata><os><type>hvm</type></os></domain>"
    )
    try:
        assert hostkeys.public_key(ctx, host, vm) == KEY  # a redefine keeps it
        assert hostkeys.restore(ctx, host.list_domains(fleet=fleet)) == [vm]
        entries = sshkeys.read_entries(hostkeys.known_hosts_path(ctx))
        assert entries == {vm: " ".join(KEY.split()[:2])}
        assert hostkeys.restore(ctx, host.list_domains(fleet=fleet)) == []
    finally:
        host.undefine(vm)
        ctx.close()


def test_read_only_access_never_remakes_a_lost_generated_login_key(
    fleet_file: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh key: the fleet's own is used
    fleet = f"lk{uuid.uuid4().hex[:6]}"
    path = fleet_file(
        f"""
fleet: {fleet}
hosts: {{local: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}}}
vms: {{a{fleet}: {{}}}}
"""
    )
    ctx = FleetContext(loaded=load(path), store=Store(tmp_path / "s"), state_dir=tmp_path / "s")
    try:
        (endpoint,) = access.endpoints(ctx, ctx.instances())
        assert endpoint.key is None  # shown as missing, never remade
        assert not (tmp_path / "s" / "id_ed25519").exists()
        assert ctx.generated_key_missing() == tmp_path / "s" / "id_ed25519"
    finally:
        ctx.close()


def test_a_recreated_vm_gets_a_new_host_key_and_its_entry_is_replaced(
    tmp_path: Path, test_driver_daemon: None
) -> None:
    """A removed VM's known_hosts entry goes with it; the VM made again under the same name
    has a host key of its own (Debian guests show the key is the one sshd serves)."""
    from tests.support.testhost import TestDriverHost
    from tests.support.testhost import fleet_file as test_driver_fleet

    from vmfleet import Fleet

    path = test_driver_fleet(tmp_path, "  a: {}\n  b: {}", prefix="rekey")
    known = tmp_path / ".vmfleet" / "known_hosts"
    with Fleet.open(path, hosts=TestDriverHost.factory) as fleet:
        fleet.up().raise_for_failures()
        first = sshkeys.read_entries(known)
        assert set(first) == {"a", "b"}
        fleet.down(("b",)).raise_for_failures()
        assert set(sshkeys.read_entries(known)) == {"a"}
        fleet.up().raise_for_failures()
        again = sshkeys.read_entries(known)
        assert again["a"] == first["a"]
        assert again["b"] != first["b"]
        fleet.down(()).raise_for_failures()
        assert sshkeys.read_entries(known) == {}


def test_the_generated_login_key_is_never_seen_without_its_public_half(
    fleet_file: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every VM's seed asks for the fleet's public key, from several threads at once: the
    first makes the pair, and the others must not find the private key before its .pub
    (ssh-keygen writes the private key first; here it takes its time between the two)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from vmfleet.drivers.commands import RecordingRunner

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    pair = sshkeys.generate_ed25519("vmfleet-k")

    def slow_keygen(argv: tuple[str, ...]) -> None:
        out = Path(argv[argv.index("-f") + 1])
        out.write_text(pair.private)
        time.sleep(0.3)
        Path(f"{out}.pub").write_text(pair.public + "\n")

    runner = RecordingRunner().script(["ssh-keygen", "-q"], effect=slow_keygen)
    path = fleet_file(
        """
fleet: keys
hosts: {local: {uri: "test:///default", domain_type: qemu, pool: default-pool}}
vms: {a: {}}
"""
    )
    ctx = FleetContext(
        loaded=load(path), store=Store(tmp_path / "s"), state_dir=tmp_path / "s", runner=runner
    )
    start = threading.Barrier(6)

    def read() -> str:
        start.wait()
        return ctx.ssh_public_key()

    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            keys = list(pool.map(lambda _: read(), range(6)))
        assert keys == [pair.public] * 6
        assert len(runner.calls) == 1
        assert sorted(p.name for p in (tmp_path / "s").iterdir() if "id_" in p.name) == [
            "id_ed25519",
            "id_ed25519.pub",
        ]
        assert list((tmp_path / "s" / "tmp").iterdir()) == []  # made aside, moved in
    finally:
        ctx.close()


def test_a_fleet_key_that_lost_its_public_half_gets_it_back_from_the_private_key(
    fleet_file: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = fleet_file(
        """
fleet: keys
hosts: {local: {uri: "test:///default", domain_type: qemu, pool: default-pool}}
vms: {a: {}}
"""
    )
    state = tmp_path / "s"
    ctx = FleetContext(loaded=load(path), store=Store(state), state_dir=state)
    try:
        made = ctx.ssh_public_key()
        (state / "id_ed25519.pub").unlink()
        assert ctx.ssh_public_key().split()[:2] == made.split()[:2]
        assert (state / "id_ed25519.pub").read_text().split()[:2] == made.split()[:2]
    finally:
        ctx.close()
