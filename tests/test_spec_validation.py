"""Every validation rule of the fleet spec: a clear error naming file, line, column and field,
all problems reported at once, exit code 2 from the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from vmfleet.errors import SpecError
from vmfleet.spec.load import load

BASE = """
networks:
  lab: {mode: nat, cidr: 192.168.88.0/24}
images:
  deb: {source: /srv/debian.qcow2}
groups:
  app: {}
vms:
"""

# (rule, vms section, expected field, expected line, words the message must hold)
CASES = [
    (
        "mac array shorter than replicas",
        """
  web:
    replicas: 3
    image: deb
    network: lab
    mac_addresses: ["52:54:00:12:34:10", "52:54:00:12:34:11"]
""",
        "vms.web.mac_addresses",
        12,
        "has 2 entries but replicas is 3",
    ),
    (
        "ip array longer than replicas",
        """
  web:
    replicas: 1
    image: deb
    network: lab
    ips: ["192.168.88.10", "192.168.88.11"]
""",
        "vms.web.ips",
        12,
        "replicas is 1",
    ),
    (
        "replicas must be positive",
        """
  web: {replicas: 0, image: deb}
""",
        "vms.web.replicas",
        8,
        "greater than 0",
    ),
    (
        "duplicate MAC between templates",
        """
  web: {image: deb, network: lab, mac_addresses: ["52:54:00:12:34:10"]}
  db: {image: deb, network: lab, mac_addresses: ["52:54:00:12:34:10"]}
""",
        "vms.db.mac_addresses[0]",
        9,
        "duplicate MAC 52:54:00:12:34:10, already used at",
    ),
    (
        "duplicate IP between templates",
        """
  web: {image: deb, network: lab, ips: ["192.168.88.10"]}
  db: {image: deb, network: lab, ips: ["192.168.88.10"]}
""",
        "vms.db.ips[0]",
        9,
        "duplicate IP 192.168.88.10",
    ),
    (
        "IP outside its network",
        """
  web: {image: deb, network: lab, ips: ["10.0.0.5"]}
""",
        "vms.web.ips[0]",
        8,
        "outside network 'lab'",
    ),
    (
        "IP equal to the network address",
        """
  web: {image: deb, network: lab, ips: ["192.168.88.0"]}
""",
        "vms.web.ips[0]",
        8,
        "network address",
    ),
    (
        "IP equal to the broadcast address",
        """
  web: {image: deb, network: lab, ips: ["192.168.88.255"]}
""",
        "vms.web.ips[0]",
        8,
        "broadcast address",
    ),
    (
        "IP equal to the gateway",
        """
  web: {image: deb, network: lab, ips: ["192.168.88.1"]}
""",
        "vms.web.ips[0]",
        8,
        "gateway",
    ),
    (
        "static IP on a user-mode network",
        """
  web: {image: deb, ips: ["10.0.2.15"]}
""",
        "vms.web.ips[0]",
        8,
        "user-mode",
    ),
    (
        "malformed MAC",
        """
  web: {image: deb, network: lab, mac_addresses: ["52:54:00:12:34"]}
""",
        "vms.web.mac_addresses[0]",
        8,
        "is not a MAC address",
    ),
    (
        "multicast MAC",
        """
  web: {image: deb, network: lab, mac_addresses: ["01:00:5e:00:00:01"]}
""",
        "vms.web.mac_addresses[0]",
        8,
        "multicast",
    ),
    (
        "VM name not a hostname",
        """
  Web_1: {image: deb}
""",
        "vms.Web_1",
        8,
        "not a valid name",
    ),
    (
        "VM name injecting into XML",
        """
  "a</name><x>": {image: deb}
""",
        "vms.a</name><x>",
        8,
        "not a valid name",
    ),
    (
        "VM name injecting into paths",
        """
  ../../etc: {image: deb}
""",
        "vms.../../etc",
        8,
        "not a valid name",
    ),
    (
        "hostname injecting into shell",
        """
  web: {image: deb, hostname: "x;reboot"}
""",
        "vms.web.hostname",
        8,
        "not a valid name",
    ),
    (
        "unknown image",
        """
  web: {image: debain}
""",
        "vms.web.image",
        8,
        "unknown image 'debain'",
    ),
    (
        "unknown network",
        """
  web: {image: deb, network: labb}
""",
        "vms.web.network",
        8,
        "did you mean 'lab'",
    ),
    (
        "unknown group",
        """
  web: {image: deb, group: ap}
""",
        "vms.web.group",
        8,
        "unknown group 'ap'",
    ),
    (
        "unknown host",
        """
  web: {image: deb, host: node-b}
""",
        "vms.web.host",
        8,
        "unknown host 'node-b'",
    ),
    (
        "unknown key with a suggestion",
        """
  web:
    image: deb
    memroy: 4GiB
""",
        "vms.web.memroy",
        10,
        "unknown key 'memroy' (did you mean 'memory'?)",
    ),
    (
        "size that does not parse",
        """
  web: {image: deb, disk: 12 parsecs}
""",
        "vms.web.disk",
        8,
        "cannot parse size '12 parsecs'",
    ),
    (
        "override for a replica that does not exist",
        """
  web:
    image: deb
    replicas: 2
    overrides:
      5: {memory: 8GiB}
""",
        "vms.web.overrides[5]",
        12,
        "valid indexes are 0..1",
    ),
    (
        "replica names clashing with another template",
        """
  web: {image: deb, replicas: 2}
  web-1: {image: deb}
""",
        "vms.web-1",
        9,
        "also produced by template 'web'",
    ),
]


@pytest.mark.parametrize(
    ("vms", "field", "line", "words"),
    [pytest.param(c[1], c[2], c[3], c[4], id=c[0]) for c in CASES],
)
def test_rule_reports_file_line_and_field(
    fleet_file: Callable[[str], Path], vms: str, field: str, line: int, words: str
) -> None:
    path = fleet_file(BASE + vms.lstrip("\n"))
    with pytest.raises(SpecError) as caught:
        load(path)
    matching = [p for p in caught.value.problems if p.field == field]
    assert matching, f"no problem on {field}: {caught.value}"
    problem = matching[0]
    assert words in problem.message
    assert problem.position is not None
    assert problem.position.file == str(path)
    assert problem.position.line == line
    assert problem.position.column >= 1


def test_yaml_syntax_error_has_a_position(fleet_file: Callable[[str], Path]) -> None:
    path = fleet_file("vms:\n  web: {image: deb\n  db: 1\n")
    with pytest.raises(SpecError) as caught:
        load(path)
    (problem,) = caught.value.problems
    assert "YAML syntax error" in problem.message
    assert problem.position is not None and problem.position.line == 3


def test_duplicate_yaml_keys_are_errors(fleet_file: Callable[[str], Path]) -> None:
    path = fleet_file(
        "images:\n  deb: {source: /x}\nvms:\n  web: {image: deb}\n  web: {image: deb}\n"
    )
    with pytest.raises(SpecError) as caught:
        load(path)
    assert [
        (p.field, p.message, p.position.line if p.position else 0) for p in caught.value.problems
    ] == [("vms.web", "duplicate key", 5)]


def test_every_problem_is_reported_not_only_the_first(fleet_file: Callable[[str], Path]) -> None:
    path = fleet_file(
        BASE
        + """
  web:
    replicas: 2
    memroy: 4GiB
    image: debain
    network: lab
    ips: ["192.168.88.1", "10.1.1.1"]
  db: {image: deb, disk: lots, group: nope}
"""
    )
    with pytest.raises(SpecError) as caught:
        load(path)
    fields = {p.field for p in caught.value.problems}
    assert {
        "vms.web.memroy",
        "vms.web.image",
        "vms.web.ips[0]",
        "vms.web.ips[1]",
        "vms.db.disk",
        "vms.db.group",
    } <= fields


@pytest.mark.parametrize(
    ("groups", "words"),
    [
        ("a: {members: [a]}", "cannot be its own member"),
        ("a: {group: a}", "cannot be its own parent"),
        ("a: {members: [b]}\n  b: {members: [a]}", "cycle"),
        ("a: {members: [web, web]}", "listed twice"),
        ("a: {members: [ghost]}", "unknown group member 'ghost'"),
    ],
)
def test_group_structure_errors(fleet_file: Callable[[str], Path], groups: str, words: str) -> None:
    path = fleet_file(
        "images:\n  deb: {source: /x}\nvms:\n  web: {image: deb}\ngroups:\n  " + groups + "\n"
    )
    with pytest.raises(SpecError) as caught:
        load(path)
    assert any(words in p.message for p in caught.value.problems), str(caught.value)


def test_a_sound_file_loads(fleet_file: Callable[[str], Path]) -> None:
    path = fleet_file(
        BASE
        + """
  web:
    replicas: 3
    image: deb
    network: lab
    memory: 4096
    disk: 40G
    mac_addresses: ["52:54:00:12:34:10", "52:54:00:12:34:11", "52:54:00:12:34:12"]
    ips: ["192.168.88.10", "192.168.88.11", "192.168.88.12"]
    group: app
"""
    )
    loaded = load(path)
    assert loaded.spec.vms["web"].memory == 4096 * 1024**2
    assert loaded.name == "fleet"
