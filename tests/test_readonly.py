"""Read-only commands change nothing: validate, show, plan (and --explain), list, status,
inventory, ssh-config, ips and hosts leave every libvirt object, the state folder and the
KVM probe's cache as they found them, and create no state folder where there was none."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from tests.support.snapshot import folder, libvirt_objects
from typer.testing import CliRunner

from vmfleet.cli.main import app
from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.engine.context import FleetContext
from vmfleet.engine.provision.ports import forward_port
from vmfleet.spec.load import load
from vmfleet.state.store import Store

FLEET = """
fleet: ro
hosts:
  local: {uri: "test:///default", pool: default-pool}
images: {base: {source: base.qcow2}}
defaults: {image: base, memory: 64MiB, disk: 16MiB}
groups: {front: {}}
vms:
  web: {replicas: 2, group: front}
  db: {}
"""

READ_ONLY = [
    ["validate"],
    ["show"],
    ["plan"],
    ["plan", "-o", "json"],
    ["plan", "--explain", "web-1"],
    ["list"],
    ["status"],
    ["inventory"],
    ["ssh-config"],
    ["ips"],
    ["hosts"],
]


@pytest.fixture
def test_driver() -> Iterator[libvirt.virConnect]:
    """libvirt's test driver, held open so that every connection in this process (the
    commands' too) sees the same objects; web-0 exists there as this fleet's domain."""
    conn = libvirt.open("test:///default")
    owner = OwnerMetadata(fleet="ro", vm="web-0", template="web", index=0, spec_hash="old")
    dom = conn.defineXML(
        f"""<domain type='test'><name>web-0</name><memory unit='MiB'>64</memory>
        <metadata>{owner.to_xml()}</metadata><os><type>hvm</type></os></domain>"""
    )
    try:
        yield conn
    finally:
        dom.undefine()
        conn.close()


def _run_all(path: Path) -> None:
    (path.parent / "base.qcow2").touch()  # the image file beside the fleet file (not read)
    runner = CliRunner()
    for args in READ_ONLY:
        argv = [args[0], str(path), *args[1:]]
        result = runner.invoke(app, argv, env={"COLUMNS": "200"})
        assert result.exit_code == 0, (argv, result.output, result.exception)


@pytest.mark.parametrize("with_state", [False, True], ids=["no-state-yet", "after-an-up"])
def test_read_only_commands_change_nothing(
    fleet_file: Callable[[str], Path], test_driver: libvirt.virConnect, with_state: bool
) -> None:
    path = fleet_file(FLEET)
    state = path.parent / ".vmfleet"
    cache = Path(os.environ["VMFLEET_CACHE_DIR"])
    if with_state:  # what an earlier `up` left: a store with leases, a key, known_hosts
        ctx = FleetContext(loaded=load(path), store=Store(state), state_dir=state)
        forward_port(ctx, host="local", vm="web-0")
        ctx.ssh_private_key()
        (state / "known_hosts").write_text("web-0 ssh-ed25519 AAAA\n")
        ctx.close()
    before = (libvirt_objects(test_driver), folder(state), folder(cache))
    _run_all(path)
    after = (libvirt_objects(test_driver), folder(state), folder(cache))
    assert after == before
    assert state.exists() == with_state


def test_ssh_config_and_inventory_without_a_key_say_so(
    fleet_file: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a user without keys in ~/.ssh
    path = fleet_file(FLEET)
    config = CliRunner().invoke(app, ["ssh-config", str(path)])
    assert config.exit_code == 0, config.output
    assert "IdentityFile: no key yet" in config.output
    inventory = CliRunner().invoke(app, ["inventory", str(path)])
    assert inventory.exit_code == 0, inventory.output
    assert "ansible_ssh_private_key_file" not in inventory.output
    assert not (path.parent / ".vmfleet").exists()


E2E_FLEET = """
fleet: {fleet}
hosts: {{local: {{uri: "qemu:///system"}}}}
images: {{base: {{source: base.qcow2}}}}
defaults: {{image: base, memory: 64MiB, disk: 16MiB}}
vms: {{web: {{replicas: 2}}}}
"""


@pytest.mark.e2e
def test_read_only_commands_change_nothing_on_real_libvirt(
    fleet_file: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `domain_type: auto` and no cached KVM answer, plan must not boot the probe: no
    domain starts or stops (watched through libvirt's events, which catch transient ones),
    and volumes, networks, the state folder and the cache stay as they were."""
    import threading

    from tests.e2e_support import unique_fleet

    monkeypatch.setenv("VMFLEET_CACHE_DIR", str(tmp_path / "cache"))
    fleet = unique_fleet("ro")
    path = fleet_file(E2E_FLEET.format(fleet=fleet))

    def ours(name: str) -> bool:  # other tests' objects come and go on this libvirtd
        return fleet in name

    # The probe's domain name holds no fleet, and other tests' `up` probe this libvirtd too:
    # calls of this process are counted at the host seam (the real method still runs).
    from vmfleet.drivers.libvirt import LibvirtHost

    booted: list[object] = []
    real_probe = LibvirtHost.boot_probe

    def counted(self: LibvirtHost, *args: Any, **kwargs: Any) -> Any:
        booted.append(kwargs.get("domain_type"))
        return real_probe(self, *args, **kwargs)

    monkeypatch.setattr(LibvirtHost, "boot_probe", counted)
    events: list[str] = []
    libvirt.virEventRegisterDefaultImpl()
    conn = libvirt.open("qemu:///system")
    running = True

    def loop() -> None:
        while running:
            libvirt.virEventRunDefaultImpl()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    callback = conn.domainEventRegisterAny(
        None,
        libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        lambda _c, dom, event, _d, _o: events.append(f"{dom.name()} {event}"),
        None,
    )
    try:
        before = (libvirt_objects(conn, ours), folder(tmp_path / "cache"))
        _run_all(path)
        after = (libvirt_objects(conn, ours), folder(tmp_path / "cache"))
    finally:
        conn.domainEventDeregisterAny(callback)
        running = False
        conn.close()
    assert booted == []
    assert [e for e in events if ours(e)] == []  # none of the fleet's domains came or went
    assert after == before
    assert not (path.parent / ".vmfleet").exists()


def test_kvm_answers_are_kept_per_host_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmfleet.state import kvmcache

    monkeypatch.setenv("VMFLEET_CACHE_DIR", str(tmp_path / "cache"))
    key = kvmcache.probe_key(
        uri="qemu:///system", host_uuid="u1", libvirt_version="9.0.0", qemu_version="7.2.0"
    )
    upgraded = kvmcache.probe_key(
        uri="qemu:///system", host_uuid="u1", libvirt_version="9.0.0", qemu_version="8.0.0"
    )
    assert kvmcache.lookup(key) is None
    kvmcache.remember(key, True)
    assert (kvmcache.lookup(key), kvmcache.lookup(upgraded)) == (True, None)
    kvmcache.remember(upgraded, False)
    assert (kvmcache.lookup(key), kvmcache.lookup(upgraded)) == (True, False)
    (tmp_path / "cache" / kvmcache.FILE_NAME).write_text("not json")
    assert kvmcache.lookup(key) is None  # an unreadable cache: probe again


@pytest.mark.e2e
def test_plan_shows_an_unknown_kvm_answer_until_hosts_probe(
    fleet_file: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.e2e_support import unique_fleet, vmfleet

    path = fleet_file(E2E_FLEET.format(fleet=unique_fleet("ro")))
    monkeypatch.setenv("VMFLEET_CACHE_DIR", str(tmp_path / "cache"))  # vmfleet inherits it
    first = vmfleet("plan", str(path))
    assert first.returncode == 0, first.stderr
    assert "host local: kvm: unknown (probed at up)" in first.stdout
    probed = vmfleet("hosts", str(path), "--probe", "-o", "json")
    assert probed.returncode == 0, probed.stderr
    again = vmfleet("plan", str(path))
    assert "kvm: unknown" not in again.stdout
    assert (tmp_path / "cache" / "kvm-probe.json").exists()
