"""Shell niceties: completion of commands and of VM, template, group and host names from the
fleet file (bash, zsh, fish); `scp` and `port-forward` through the fleet's key and verified
known_hosts; `status` without a group lists every VM above the group tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e_support import vmfleet

from vmfleet.api.types import Endpoint, forward_argv, scp_argv
from vmfleet.cli.transfer import ports, remote_vm
from vmfleet.errors import UsageError

FLEET = (
    'hosts: {local: {uri: "test:///default", domain_type: qemu, pool: default-pool}}\n'
    "defaults: {memory: 64MiB, disk: 16MiB}\n"
    "vms:\n  web: {replicas: 2, group: app}\n  db: {group: app}\n"
    "groups:\n  app: {}\n"
)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"_VMFLEET_COMPLETE": "complete_bash", "COMP_WORDS": "vmfleet up w", "COMP_CWORD": "2"},
         ["web", "web-0", "web-1"]),
        ({"_VMFLEET_COMPLETE": "complete_bash", "COMP_WORDS": "vmfleet sta", "COMP_CWORD": "1"},
         ["start", "status"]),
        ({"_VMFLEET_COMPLETE": "complete_fish", "_TYPER_COMPLETE_ARGS": "vmfleet stop d",
          "_TYPER_COMPLETE_FISH_ACTION": "get-args"}, ["db"]),
    ],
)  # fmt: skip
def test_completion_names_from_the_fleet_file(
    tmp_path: Path, env: dict[str, str], expected: list[str]
) -> None:
    (tmp_path / "vmfleet.yaml").write_text(FLEET)
    result = vmfleet(cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.split()] == expected


def test_zsh_completion_offers_groups_and_hosts(tmp_path: Path) -> None:
    (tmp_path / "vmfleet.yaml").write_text(FLEET)
    env = {"_VMFLEET_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "vmfleet start "}
    out = vmfleet(cwd=tmp_path, env=env).stdout
    for name in ("app", "db", "local", "web-1"):
        assert f'"{name}"' in out


def test_status_without_a_group_lists_every_vm_then_the_tree(tmp_path: Path) -> None:
    (tmp_path / "vmfleet.yaml").write_text(FLEET)
    result = vmfleet("status", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("web-0") < out.index("db") < out.index("Group / member")
    assert "absent" in out
    only = vmfleet("status", "app", cwd=tmp_path).stdout
    assert "absent" not in only


ENDPOINT = Endpoint(
    vm="web-0", template="web", host="local", state="running", address="127.0.0.1",
    port=2201, user="debian", key=Path("/s/id_ed25519"), known_hosts=Path("/s/known_hosts"),
    strict=True, proxy_jump=None,
)  # fmt: skip


def test_scp_uses_the_fleet_key_and_known_hosts() -> None:
    argv = scp_argv(ENDPOINT, ["./app.tar", "web-0:/tmp/"], recursive=True)
    assert argv[0] == "scp"
    for option in ("UserKnownHostsFile=/s/known_hosts", "HostKeyAlias=web-0",
                   "StrictHostKeyChecking=yes"):  # fmt: skip
        assert option in argv
    assert argv[-3:] == ["--", "./app.tar", "debian@127.0.0.1:/tmp/"]
    assert argv[argv.index("-P") : argv.index("-P") + 2] == ["-P", "2201"]
    assert "-r" in argv


def test_port_forward_binds_loopback_only() -> None:
    argv = forward_argv(ENDPOINT, local=8080, remote=80)
    assert "-L" in argv and argv[argv.index("-L") + 1] == "127.0.0.1:8080:localhost:80"
    assert "StrictHostKeyChecking=yes" in argv and argv[-1] == "debian@127.0.0.1"


def test_transfer_arguments() -> None:
    assert ports("8080:80") == (8080, 80)
    assert ports("5432") == (5432, 5432)
    assert remote_vm(["a.txt", "web@0:/tmp"]) == "web@0"
    with pytest.raises(UsageError):
        ports("80:99999")
    with pytest.raises(UsageError, match="exactly one VM"):
        remote_vm(["a:/x", "b:/y"])


def test_scp_never_takes_a_local_path_as_the_fleet_file(tmp_path: Path) -> None:
    (tmp_path / "vmfleet.yaml").write_text(FLEET)
    (tmp_path / "notes.txt").write_text("hi")
    result = vmfleet("scp", "notes.txt", "nosuch:/tmp/", cwd=tmp_path)
    assert result.returncode == 2
    assert "nosuch" in result.stderr and "cannot read" not in result.stderr
