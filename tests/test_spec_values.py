"""Odd values refused at load time, each at its own position: sizes too small or not finite,
booleans where a count goes, reversed address ranges, proxies that are not URLs, SSH keys
that are paths, root as the login user, control characters in free text, labels that YAML
made booleans, bad checksums, and networks too small for their VMs. Exit code 2 from the CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from vmfleet.errors import SpecError
from vmfleet.spec.load import load

BASE = """\
networks:
  lab: {mode: nat, cidr: 192.168.88.0/24}
images:
  deb: {source: /srv/debian.qcow2}
vms:
"""
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx8c2V0IGJ5IHRlc3Q user@host"

# (rule, vms section, field, line, words the message must hold)
CASES = [
    ("memory below 16 MiB", "  web: {image: deb, memory: 1B}\n", "vms.web.memory", 6, "too small"),
    ("memory infinite", "  web: {image: deb, memory: .inf}\n", "vms.web.memory", 6, "finite"),
    ("memory not a number", "  web: {image: deb, memory: .nan}\n", "vms.web.memory", 6, "finite"),
    ("disk below 1 MiB", "  web: {image: deb, disk: 512B}\n", "vms.web.disk", 6, "too small"),
    (
        "data disk below 1 MiB",
        "  web: {image: deb, data_disks: [{size: 10KiB}]}\n",
        "vms.web.data_disks[0].size",
        6,
        "too small",
    ),
    (
        "timeout not a number",
        "  web: {image: deb, ready: {timeout: .nan}}\n",
        "vms.web.ready.timeout",
        6,
        "finite",
    ),
    (
        "replicas a boolean",
        "  web: {image: deb, replicas: true}\n",
        "vms.web.replicas",
        6,
        "boolean",
    ),
    ("vcpus a boolean", "  web: {image: deb, vcpus: yes}\n", "vms.web.vcpus", 6, "boolean"),
    (
        "apt proxy not a URL",
        "  web: {image: deb, cloud_init: {apt_proxy: 10.0.0.1:3142}}\n",
        "vms.web.cloud_init.apt_proxy",
        6,
        "http:// or https://",
    ),
    (
        "apt proxy with a quote",
        "  web: {image: deb, cloud_init: {apt_proxy: 'http://a\";b'}}\n",
        "vms.web.cloud_init.apt_proxy",
        6,
        "http:// or https://",
    ),
    (
        "ssh key that is a path",
        "  web: {image: deb, cloud_init: {ssh_keys: [~/.ssh/id_ed25519.pub]}}\n",
        "vms.web.cloud_init.ssh_keys[0]",
        6,
        "file path",
    ),
    (
        "ssh key with a newline",
        f'  web: {{image: deb, cloud_init: {{ssh_keys: ["{KEY}\\n{KEY}"]}}}}\n',
        "vms.web.cloud_init.ssh_keys[0]",
        6,
        "not one SSH public key",
    ),
    (
        "root as login user",
        "  web: {image: deb, cloud_init: {user: root}}\n",
        "vms.web.cloud_init.user",
        6,
        "root cannot be the login user",
    ),
    (
        "control character in description",
        '  web: {image: deb, description: "a\\x07b"}\n',
        "vms.web.description",
        6,
        "U+0007",
    ),
    (
        "control character in a write_files path",
        '  web: {image: deb, cloud_init: {write_files: [{path: "/etc/a\\nb"}]}}\n',
        "vms.web.cloud_init.write_files[0].path",
        6,
        "U+000A",
    ),
    (
        "escape character in runcmd",
        '  web: {image: deb, cloud_init: {runcmd: ["echo \\x1b[2J"]}}\n',
        "vms.web.cloud_init.runcmd[0]",
        6,
        "U+001B",
    ),
    (
        "label value YAML read as a boolean",
        "  web: {image: deb, labels: {canary: yes}}\n",
        "vms.web.labels",
        6,
        "quote it",
    ),
    (
        "labels given as a list",
        "  web: {image: deb, labels: [tier, web]}\n",
        "vms.web.labels",
        6,
        "mapping",
    ),
    (
        "label value YAML read as a number",
        "  web: {image: deb, labels: {tier: 1}}\n",
        "vms.web.labels",
        6,
        "quote it",
    ),
]

NETWORK_CASES = [
    (
        "reserved range reversed",
        "  lab: {mode: nat, cidr: 192.168.88.0/24, reserved: [192.168.88.9-192.168.88.2]}\n",
        "networks.lab.reserved[0]",
        2,
        "reversed",
    ),
    (
        "reserved entry not an address",
        "  lab: {mode: nat, cidr: 192.168.88.0/24, reserved: [printer]}\n",
        "networks.lab.reserved[0]",
        2,
        "not an address",
    ),
    (
        "mtu a boolean",
        "  lab: {mode: nat, cidr: 192.168.88.0/24, mtu: true}\n",
        "networks.lab.mtu",
        2,
        "boolean",
    ),
]


NETWORK_TAIL = "images:\n  deb: {source: /x}\nvms:\n  web: {image: deb}\n"
FILES = [(c[0], BASE + c[1], *c[2:]) for c in CASES]
FILES += [(c[0], "networks:\n" + c[1] + NETWORK_TAIL, *c[2:]) for c in NETWORK_CASES]


@pytest.mark.parametrize(
    ("text", "field", "line", "words"),
    [pytest.param(c[1], c[2], c[3], c[4], id=c[0]) for c in FILES],
)
def test_odd_values_are_refused_at_their_position(
    fleet_file: Callable[[str], Path], text: str, field: str, line: int, words: str
) -> None:
    assert_problem(fleet_file(text), field, line, words)


def test_an_infinite_overcommit_is_refused(fleet_file: Callable[[str], Path]) -> None:
    text = "hosts:\n  h: {overcommit: {cpu: .inf}}\nvms: {}\n"
    assert_problem(fleet_file(text), "hosts.h.overcommit.cpu", 2, "finite")


def test_a_checksum_must_be_64_hex_digits(fleet_file: Callable[[str], Path]) -> None:
    text = (
        "images:\n  deb: {source: 'https://x/d.qcow2', sha256: abc123}\nvms:\n  web: {image: deb}\n"
    )
    assert_problem(fleet_file(text), "images.deb.sha256", 2, "64 hex digits")


def test_a_network_too_small_for_its_vms_is_a_positioned_error(
    fleet_file: Callable[[str], Path],
) -> None:
    text = (
        "networks:\n  tiny: {mode: nat, cidr: 192.168.50.0/30}\n"
        "images:\n  deb: {source: /x}\n"
        "vms:\n  web:\n    image: deb\n    network: tiny\n    replicas: 5\n"
    )
    problem = assert_problem(fleet_file(text), "vms.web.replicas", 9, "runs out of addresses")
    assert ":2:" in problem.message  # names where the cidr is written


def test_reserved_and_written_addresses_count_against_the_pool(
    fleet_file: Callable[[str], Path],
) -> None:
    # A /29 has .1 (gateway) to .6: .2-.4 reserved and .5 written leave one for two VMs.
    text = (
        "networks:\n  n: {mode: nat, cidr: 10.1.0.0/29, reserved: [10.1.0.2-10.1.0.4]}\n"
        "images:\n  deb: {source: /x}\n"
        "vms:\n  db: {image: deb, network: n, ips: [10.1.0.5]}\n"
        "  web: {image: deb, network: n, replicas: 2}\n"
    )
    assert_problem(fleet_file(text), "vms.web.replicas", 7, "runs out of addresses")


def test_cli_exits_2_on_odd_values_and_on_exhaustion(fleet_file: Callable[[str], Path]) -> None:
    for text in (
        BASE + "  web: {image: deb, replicas: true}\n",
        "networks:\n  t: {mode: nat, cidr: 10.0.0.0/30}\nimages:\n  d: {source: /x}\n"
        "vms:\n  w: {image: d, network: t, replicas: 5}\n",
    ):
        path = fleet_file(text)
        for command in ("validate", "show"):
            result = subprocess.run(
                [sys.executable, "-m", "vmfleet.cli.main", command, str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 2, result.stderr
            assert "Traceback" not in result.stderr
            assert f"{path}:" in result.stderr + result.stdout


def assert_problem(path: Path, field: str, line: int, words: str) -> object:
    with pytest.raises(SpecError) as caught:
        load(path)
    matching = [p for p in caught.value.problems if p.field == field]
    assert matching, f"no problem on {field}: {caught.value}"
    problem = matching[0]
    assert words in problem.message, problem.message
    assert problem.position is not None
    assert (problem.position.file, problem.position.line) == (str(path), line)
    return problem


def test_a_vm_runs_its_images_arch_unless_it_says_otherwise(
    fleet_file: Callable[[str], Path],
) -> None:
    from vmfleet.core.expand import expand

    text = (
        "images:\n  arm: {source: /x, arch: aarch64}\n  pc: {source: /y}\n"
        "vms:\n  a: {image: arm}\n  b: {image: pc}\n"
    )
    loaded = load(fleet_file(text))
    assert [i.fields.arch for i in expand(loaded.spec, fleet="f")] == ["aarch64", "x86_64"]


def test_internal_snapshots_of_a_uefi_vm_are_refused_where_set(
    fleet_file: Callable[[str], Path],
) -> None:
    text = (
        "defaults: {snapshot_type: internal}\n"
        "vms:\n  a: {image: d, firmware: uefi}\n  b: {image: d}\n"
        "images:\n  d: {source: /x}\n"
    )
    problem = assert_problem(fleet_file(text), "defaults.snapshot_type", 1, "impossible with UEFI")
    assert "vms.b" not in problem.field


def test_an_arch_that_differs_from_the_images_is_refused(fleet_file: Callable[[str], Path]) -> None:
    text = (
        "images:\n  arm: {source: /x, arch: aarch64}\n"
        "profiles:\n  pc: {arch: x86_64}\n"
        "vms:\n  a: {image: arm, extends: [pc]}\n"
    )
    assert_problem(fleet_file(text), "profiles.pc.arch", 4, "does not match image 'arm'")
