"""Hostile and malformed input: every file gets exit 2 and a message naming file, line and
field, never a traceback, in bounded time and memory (issue 17 items 8-10)."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from tests.support.validate import POSITION, run_validate

from vmfleet.errors import SpecError
from vmfleet.spec.load import load

FIXTURES = Path(__file__).parent / "fixtures"

IMAGE = b"images: {deb: {source: /srv/deb.qcow2}}\n"
VM = b"apiVersion: vmoperator.vmware.com/v1alpha5\nkind: VirtualMachine\n"
GROUP = b"apiVersion: vmoperator.vmware.com/v1alpha4\nkind: VirtualMachineGroup\n"
CLASS = b"apiVersion: vmoperator.vmware.com/v1alpha4\nkind: VirtualMachineClass\n"

LAUGHS = b"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + b"".join(
    b"%c: &%c [%s]\n" % (ord(n), ord(n), b", ".join([b"*" + bytes([ord(n) - 1])] * 9))
    for n in "bcdefghij"
)
MERGE_LAUGHS = b"a: &a {x: 1, y: 2}\n" + b"".join(
    b"%c: &%c {<<: [*%c, *%c], k%c: 1}\n" % (ord(n), ord(n), ord(n) - 1, ord(n) - 1, ord(n))
    for n in "bcdefghijklmnopqrstuvwxyz"
)

# (rule, file content, expected line, words the message must hold)
CASES: list[tuple[str, bytes, int, str]] = [
    ("billion laughs", LAUGHS, 1, "more than 50000 values once aliases are expanded"),
    ("merge-key laughs", MERGE_LAUGHS, 3, "more than 50000 values"),
    ("alias inside its own anchor", b"vms: &a [*a]\n", 1, "nested deeper than 64 levels"),
    (
        "deep block nesting",
        b"".join(b"  " * i + b"k:\n" for i in range(80)) + b"  " * 80 + b"x\n",
        65,
        "nested deeper than 64",
    ),
    ("deep flow nesting", b"vms: " + b"[" * 5000 + b"]" * 5000 + b"\n", 1, "YAML syntax error"),
    (
        "too many values",
        b"vms: [" + b"0," * 60_000 + b"]\n",
        1,
        "more than 50000 values in one file",
    ),
    ("NUL byte", b"vms:\n  web: {image: d\x00eb}\n", 2, "U+0000 is not allowed"),
    ("latin-1 byte", b"vms:\n  web:\n    description: caf\xe9\n", 3, "byte 0xe9 is not UTF-8"),
    ("undefined alias", b"vms: *nope\n", 1, "undefined alias *nope"),
    ("anchor defined twice", b"a: &x 1\nb: &x 2\n", 2, "anchor &x is defined twice"),
    ("unknown tag", b"vms: !Ref web\n", 1, "unsupported YAML tag !Ref"),
    ("python tag", b"vms: !!python/object:os.system [ls]\n", 1, "unsupported YAML tag"),
    ("integer too long", b"vms: {web: {replicas: " + b"9" * 5000 + b"}}\n", 1, "cannot read"),
    ("list as a key", b"vms:\n  ? [a, b]\n  : {}\n", 2, "a key must be a plain value"),
    ("merge of a scalar", b"vms:\n  web: {<<: 3}\n", 2, "merge key (<<) takes a mapping"),
    (
        "memory .inf",
        IMAGE + b"vms:\n  web: {image: deb, memory: .inf}\n",
        3,
        "'.inf' is not a finite number",
    ),
    (
        "timeout .nan",
        IMAGE + b"vms:\n  web: {image: deb, ready: {timeout: .nan}}\n",
        3,
        "not a finite number",
    ),
    ("overcommit -.inf", b"hosts:\n  h: {overcommit: {cpu: -.inf}}\n", 2, "not a finite number"),
    (
        "size beyond a float",
        IMAGE + b"vms:\n  web: {image: deb, memory: '" + b"9" * 400 + b"G'}\n",
        3,
        "vms.web.memory: size",
    ),
    (
        "second document",
        IMAGE + b"vms: {}\n---\nvms: {web: {image: deb}}\n",
        4,
        "a second YAML document",
    ),
    (
        "too many VMs",
        IMAGE
        + b"vms:\n"
        + b"".join(b"  w%d: {image: deb, replicas: 5000}\n" % i for i in range(3)),
        2,
        "15000 VMs in one fleet; at most 10000",
    ),
    (
        "label value a boolean",
        IMAGE + b"vms:\n  web: {image: deb, labels: {canary: yes}}\n",
        3,
        "for 'canary' is a boolean, not text",
    ),
    (
        "label value a number",
        IMAGE + b"vms:\n  web: {image: deb, labels: {v: 2}}\n",
        3,
        "not text",
    ),
    (
        "sha256 a number",
        b"images:\n  deb: {source: 'https://x/d.qcow2', sha256: 1234}\n",
        2,
        "sha256 must be a text of 64 hex digits",
    ),
    (
        "sha256 too short",
        b"images:\n  deb: {source: 'https://x/d.qcow2', sha256: abc}\n",
        2,
        "64 hex digits",
    ),
    ("rich markup in a key", b"vms:\n  '[/x]': {image: deb}\n", 2, "'[/x]' is not a valid name"),
    # --- Ansible inventory
    (
        "inventory host is a list",
        b"vms:\n  hosts:\n    a: [1]\n    b: {vm_memory: 1}\n",
        3,
        "host 'a' must be a mapping, got a list",
    ),
    (
        "inventory host is a string",
        b"vms:\n  hosts:\n    a: text\n    b: {vm_memory: 1}\n",
        3,
        "must be a mapping, got the text 'text'",
    ),
    (
        "inventory replicas abc",
        b"vms:\n  hosts:\n    a: {vm_memory: 1024, replicas: abc, vm_hostname: x}\n",
        3,
        "vms.a.replicas: Input should be a valid integer",
    ),
    (
        "inventory vm_static_ips 5",
        b"vms:\n  hosts:\n    a: {vm_memory: 1024, vm_static_ips: 5}\n",
        3,
        "vms.a.ips: Input should be a valid list",
    ),
    (
        "inventory packages 3",
        b"vms:\n  hosts:\n    a: {vm_memory: 1024, packages: 3}\n",
        3,
        "expected a list of package names",
    ),
    (
        "inventory vars not a mapping",
        b"vms:\n  vars: [1]\n  hosts:\n    a: {vm_memory: 1024}\n",
        2,
        "the group's vars must be a mapping",
    ),
    (
        "inventory vm_name hostile",
        b"vms:\n  hosts:\n    a: {vm_memory: 1024, vm_name: '../x</name>'}\n",
        3,
        "is not a valid name",
    ),
    (
        "inventory vm_name invalid",
        b"vms:\n  hosts:\n    a: {vm_memory: 1024, vm_name: Web_1}\n",
        3,
        "for example 'web-1'",
    ),
    (
        "inventory names collide",
        b"vms:\n  hosts:\n    Web_1: {vm_memory: 1024}\n    web-1: {vm_memory: 1024}\n",
        4,
        "the name 'web-1' is already used at",
    ),
    (
        "inventory duplicate vm_name",
        b"vms:\n  hosts:\n    a: {vm_name: web, vm_memory: 1}\n"
        b"    b: {vm_name: web, vm_memory: 1}\n",
        4,
        "already used at",
    ),
    (
        "inventory ssh key is a path",
        b"vms:\n  hosts:\n    a: {vm_memory: 1024, vm_ssh_public_key: ~/.ssh/id_rsa.pub}\n",
        3,
        "is a path; give the public key itself",
    ),
    (
        "inventory second document",
        b"vms:\n  hosts:\n    a: {vm_memory: 1024}\n---\nx: 1\n",
        5,
        "a second YAML document",
    ),
    (
        "inventory without vms group",
        b"all:\n  children:\n    web:\n      hosts: {a: {}}\n",
        1,
        "without a `vms` group",
    ),
    # --- cluster variables
    (
        "cluster vm is a string",
        b"vm_defaults: {}\nvms:\n  a: text\n",
        3,
        "VM 'a' must be a mapping",
    ),
    (
        "cluster vm_defaults a list",
        b"vm_defaults: [1]\nvms:\n  a: {cpus: 1}\n",
        1,
        "vm_defaults must be a mapping",
    ),
    (
        "cluster names collide",
        b"vms:\n  Web_1: {cpus: 1}\n  web-1: {cpus: 1}\n",
        3,
        "already used at",
    ),
    (
        "cluster node not a host name",
        b"vms:\n  a: {cpus: 1, node_preference: 'x/y?z'}\n",
        2,
        "is not a host name",
    ),
    (
        "cluster bridges collide",
        b"vms:\n  a: {cpus: 1, network: br_0}\n  b: {cpus: 1, network: br-0}\n",
        3,
        "would both be named 'br-0'",
    ),
    ("cluster disks 3", b"vms:\n  a: {cpus: 1, disks: 3}\n", 2, "disks: expected a list"),
    (
        "cluster disk without size",
        b"vms:\n  a: {cpus: 1, disks: [{name: sda}]}\n",
        2,
        "a disk needs {name, size}",
    ),
    # --- vm-operator manifests
    (
        "manifest metadata a string",
        VM + b"metadata: just-a-string\n",
        3,
        "metadata must be a mapping",
    ),
    (
        "manifest spec a list",
        VM + b"metadata: {name: a}\nspec: [1]\n",
        4,
        "spec must be a mapping",
    ),
    (
        "kubevirt VirtualMachine",
        b"apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: a}\n",
        1,
        "vmoperator.vmware.com/v1alpha1 to v1alpha5",
    ),
    (
        "manifest names repeat",
        VM + b"metadata: {name: a}\n---\n" + VM + b"metadata: {name: a}\n",
        7,
        "the name 'a' is already used at",
    ),
    (
        "manifest name invalid",
        VM + b"metadata: {name: Web_1}\n",
        3,
        "is not a valid name",
    ),
    (
        "manifest images collide",
        VM
        + b"metadata: {name: a}\nspec: {imageName: u-1.0}\n---\n"
        + VM
        + b"metadata: {name: b}\nspec: {imageName: u-1-0}\n",
        9,
        "would both be 'u-1-0'",
    ),
    (
        "manifest className a mapping",
        VM + b"metadata: {name: a}\nspec: {className: {x: 1}}\n",
        4,
        "className: expected a name",
    ),
    (
        "manifest labels a list",
        VM + b"metadata: {name: a, labels: [x]}\nspec: {className: c}\n",
        3,
        "metadata.labels must be a mapping",
    ),
    (
        "manifest bootOrder tier a string",
        GROUP + b"metadata: {name: g}\nspec: {bootOrder: [x]}\n",
        4,
        "a bootOrder tier must be a mapping",
    ),
    (
        "manifest hardware a string",
        CLASS + b"metadata: {name: c}\nspec: {hardware: cpus}\n",
        4,
        "spec.hardware must be a mapping",
    ),
]


@pytest.mark.parametrize(("rule", "content", "line", "words"), CASES, ids=[c[0] for c in CASES])
def test_hostile_file_exits_2_with_its_position(
    tmp_path: Path, rule: str, content: bytes, line: int, words: str
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(content)
    started = time.process_time()
    code, stderr = run_validate(path)
    assert time.process_time() - started < 5, rule
    assert code == 2, stderr
    assert words in stderr
    assert f"{path}:{line}:" in stderr, stderr
    assert "Traceback" not in stderr


def test_billion_laughs_fails_fast_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_bytes(LAUGHS)
    tracemalloc.start()  # slows Python down several times: the time bound is in CASES
    try:
        with pytest.raises(SpecError, match="more than 50000 values"):
            load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 * 1024 * 1024


def test_a_50_mb_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as out:
        out.write(b"vms:\n")
        out.write(b"# padding\n" * 5_000_000)
    started = time.process_time()
    code, stderr = run_validate(path)
    assert time.process_time() - started < 5
    assert code == 2
    assert f"{path}:1:1: file is larger than 2 MiB" in stderr


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(
        IMAGE + b"vms:\n  a: &base {image: deb, memory: 1G, vcpus: 2}\n"
        b"  b: {<<: *base, memory: 2G}\n"
    )
    loaded = load(path)
    assert loaded.spec.vms["b"].memory == 2 * 1024**3
    assert loaded.spec.vms["b"].vcpus == 2


def test_every_problem_line_has_a_position(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(b"vms:\n  hosts:\n    a: [1]\n    b: x\n    c: {vm_memory: 1, packages: 3}\n")
    code, stderr = run_validate(path)
    assert code == 2
    assert len(POSITION.findall(stderr)) == 3
