"""How vmfleet names and reaches VMs, without booting any: `NAME@i` resolution and its
errors, the ssh command line, ssh_config blocks, and the Ansible inventory shapes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from vmfleet.cli.access import env_name
from vmfleet.engine import access
from vmfleet.engine.context import FleetContext
from vmfleet.engine.provision.ports import forward_port
from vmfleet.errors import UsageError
from vmfleet.spec.load import load
from vmfleet.state.store import Store

FLEET = """
fleet: acc
hosts:
  local: {uri: "test:///default", domain_type: qemu, pool: default-pool}
  far: {uri: "qemu+ssh://admin@127.0.0.2:1/system", schedulable: false}
images: {d: {source: /x}}
networks: {lab: {mode: nat, cidr: 192.168.50.0/24}}
defaults: {image: d}
groups: {front: {}}
vms:
  web: {replicas: 3, labels: {tier: web}, group: front}
  db: {network: lab, ips: [192.168.50.10]}
  far-vm: {host: far}
"""


@pytest.fixture
def ctx(fleet_file: Callable[[str], Path], tmp_path: Path) -> FleetContext:
    loaded = load(fleet_file(FLEET))
    return FleetContext(loaded=loaded, store=Store(tmp_path / "s"), state_dir=tmp_path / "s")


@pytest.mark.parametrize(
    ("target", "names"),
    [
        ("web@1", ["web-1"]),
        ("web-2", ["web-2"]),
        ("web", ["web-0", "web-1", "web-2"]),
        ("front", ["web-0", "web-1", "web-2"]),
        ("db", ["db"]),
        ("all", ["web-0", "web-1", "web-2", "db", "far-vm"]),
    ],
)
def test_targets_resolve(ctx: FleetContext, target: str, names: list[str]) -> None:
    assert [i.name for i in access.resolve(ctx, target)] == names


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("web@3", "index 3 is out of range for web (0..2)"),
        ("db@0", "only the bare name"),
        ("nosuch@0", "unknown VM template 'nosuch'"),
        ("nosuch", "unknown VM, template or group 'nosuch'"),
    ],
)
def test_bad_targets_are_usage_errors(ctx: FleetContext, target: str, words: str) -> None:
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        access.resolve(ctx, target)


def test_a_user_nic_vm_without_a_forward_yet_has_no_address(ctx: FleetContext) -> None:
    """Before `up` leased its forward port, a VM has no address; nothing is leased here."""
    (web0,) = access.endpoints(ctx, access.resolve(ctx, "web@0"))
    assert (web0.address, web0.port, web0.state) == (None, 22, "absent")
    assert ctx.store.leases("port") == []


def _lease_forwards(ctx: FleetContext) -> None:
    """What `up` does for user-NIC VMs: lease their 127.0.0.1 forward ports."""
    for vm in ("web-0", "web-1", "web-2"):
        forward_port(ctx, host="local", vm=vm)
    forward_port(ctx, host="far", vm="far-vm")


def test_endpoints_and_ssh_command_line(ctx: FleetContext) -> None:
    _lease_forwards(ctx)
    web0, db, far = access.endpoints(
        ctx, [access.resolve(ctx, n)[0] for n in ("web@0", "db", "far-vm")]
    )
    assert (web0.address, web0.state, web0.user) == ("127.0.0.1", "absent", "vmfleet")
    assert 22000 <= web0.port < 42000
    assert (db.address, db.port) == ("192.168.50.10", 22)
    assert far.proxy_jump == "admin@127.0.0.2:1"
    argv = access.ssh_argv(web0, command=["uname", "-a"])
    assert argv[0] == "ssh"
    assert f"UserKnownHostsFile={ctx.state_dir / 'known_hosts'}" in argv
    assert "HostKeyAlias=web-0" in argv and "StrictHostKeyChecking=yes" in argv
    assert "StrictHostKeyChecking=no" not in " ".join(argv)
    assert argv[-4:] == ["vmfleet@127.0.0.1", "--", "uname", "-a"]
    assert "-J" in access.ssh_argv(far, command=["true"])


def test_ssh_config_blocks(ctx: FleetContext) -> None:
    _lease_forwards(ctx)
    text = access.ssh_config(access.endpoints(ctx, ctx.instances()))
    assert text.count("Host ") == 5
    assert "Host web-1\n    HostName 127.0.0.1\n" in text
    assert "Host db\n    HostName 192.168.50.10\n    Port 22\n" in text
    assert "    ProxyJump admin@127.0.0.2:1" in text
    assert "StrictHostKeyChecking yes" in text


def test_inventory_groups_and_vars(ctx: FleetContext) -> None:
    inv = access.inventory(ctx, access.endpoints(ctx, ctx.instances()))
    children = inv["all"]["children"]  # type: ignore[index]
    assert set(children["template_web"]["hosts"]) == {"web-0", "web-1", "web-2"}
    assert set(children["group_front"]["hosts"]) == {"web-0", "web-1", "web-2"}
    assert set(children["label_tier_web"]["hosts"]) == {"web-0", "web-1", "web-2"}
    assert set(children["host_far"]["hosts"]) == {"far-vm"}
    hostvars = inv["all"]["hosts"]["db"]  # type: ignore[index]
    assert hostvars["ansible_host"] == "192.168.50.10"
    assert {"ansible_port", "ansible_user"} <= set(hostvars)
    has_key = "ansible_ssh_private_key_file" in hostvars
    assert has_key == (ctx.existing_ssh_key() is not None)
    listed = access.dynamic_inventory(inv)
    assert set(listed["template_web"]["hosts"]) == {"web-0", "web-1", "web-2"}  # type: ignore[index]
    assert "db" in listed["_meta"]["hostvars"]  # type: ignore[index]


def test_env_names_are_shell_safe() -> None:
    assert env_name("k8s-master1") == "K8S_MASTER1"
    assert env_name("ubuntu-dev-0") == "UBUNTU_DEV_0"


def test_exec_keeps_a_target_that_is_also_a_command_word(fleet_file: Callable[[str], Path]) -> None:
    """`exec FILE db -- echo db` targets db: words after `--` are the command, the rest targets."""
    from typer.testing import CliRunner

    from vmfleet.cli.main import app

    path = fleet_file(FLEET)
    runner = CliRunner()
    ran = runner.invoke(app, ["exec", str(path), "db", "--", "echo", "db"])
    assert not isinstance(ran.exception, UsageError), ran.exception
    missing = runner.invoke(app, ["exec", str(path), "--", "echo", "db"])
    assert isinstance(missing.exception, UsageError)
