"""Fuzzing the four input formats: any file gives exit 0, or exit 2 with every problem at
a file:line:column, never a traceback, within a time budget per file.

Examples start from the fixtures (native, Ansible inventory, cluster variables, vm-operator
manifests) and mutate them: values replaced by other types, keys dropped and added, deep
nesting, shared subtrees that YAML writes as anchors and aliases (also recursive ones).
`make test` runs a few examples per format; `make fuzz` (VMFLEET_FUZZ_EXAMPLES) many more.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.validate import POSITION, run_validate

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = int(os.environ.get("VMFLEET_FUZZ_EXAMPLES", "15"))
BUDGET_S = 5.0  # seconds of CPU: wall time on a shared machine says little

NATIVE = """
fleet: lab
hosts:
  local: {uri: "test:///default", labels: {zone: a}, capacity: {cpus: 8, memory: 16GiB}}
images:
  deb: {source: /srv/debian.qcow2, format: qcow2}
networks:
  lab: {mode: nat, cidr: 192.168.88.0/24, dns: [192.168.88.1], reserved: [192.168.88.2]}
defaults: {memory: 1GiB, vcpus: 1, image: deb, network: lab}
profiles:
  big: {memory: 4GiB, vcpus: 4}
vms:
  web:
    replicas: 2
    extends: [big]
    labels: {tier: web}
    group: app
    ips: [192.168.88.10, 192.168.88.11]
    cloud_init: {user: admin, packages: [nginx], ssh_keys: ["ssh-ed25519 AAAA x"]}
    ready: {wait_for: ssh, timeout: 60s}
    overrides: {1: {memory: 2GiB}}
  db: {disk: 20G, data_disks: [{size: 10, name: data}], max_per_host: 1}
groups:
  app: {members: [db], boot_order: [{members: [db], delay: 5s}], snapshots: {keep: 2}}
"""

SOURCES: dict[str, list[Any]] = {
    "native": [yaml.safe_load(NATIVE)],
    "ansible-inventory": [yaml.safe_load((FIXTURES / "replicas-usecases.yml").read_text())],
    "cluster-vars": [yaml.safe_load((FIXTURES / "cluster-vars.yml").read_text())],
    "kubernetes": list(yaml.safe_load_all((FIXTURES / "vm-groups.k8s.yaml").read_text())),
}

KEYS = sorted(
    {"vms", "hosts", "vars", "replicas", "vm_name", "vm_memory", "vm_static_ips", "packages"}
    | {"metadata", "spec", "name", "labels", "kind", "apiVersion", "bootOrder", "members"}
    | {"cpus", "disks", "network", "node_preference", "vm_defaults", "image", "memory", "all"}
    | {"groups", "networks", "images", "cidr", "ips", "<<", "cloud_init", "ready", "timeout"}
)

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.sampled_from(["web", "Web_1", "a</name>", "~/.ssh/id.pub", "1GiB", "yes", "[/x]", ""]),
    st.sampled_from(["192.168.88.10", "52:54:00:00:00:01", "300", "9" * 400 + "G"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=12,
)


def _containers(node: Any, out: list[Any]) -> list[Any]:
    """Every dict and list in a tree (each once, even when shared)."""
    if isinstance(node, dict | list) and all(node is not seen for seen in out):
        out.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            _containers(child, out)
    return out


def _mutate(data: st.DataObject, docs: list[Any]) -> None:
    targets = _containers(docs, [])
    target = data.draw(st.sampled_from(targets))
    slots = list(target) if isinstance(target, dict) else list(range(len(target)))
    action = data.draw(st.sampled_from(["replace", "drop", "add", "share", "deep", "wrap"]))
    if action == "add" or not slots:
        key = data.draw(st.sampled_from(KEYS) | text) if isinstance(target, dict) else None
        new = data.draw(values)
        target.__setitem__(key, new) if isinstance(target, dict) else target.append(new)
        return
    slot = data.draw(st.sampled_from(slots))
    if action == "drop":
        del target[slot]
    elif action == "replace":
        target[slot] = data.draw(values)
    elif action == "share":  # the same object twice: YAML writes an anchor and an alias
        target[slot] = data.draw(st.sampled_from(targets))
    elif action == "deep":
        depth = data.draw(st.integers(min_value=10, max_value=120))
        nested: Any = data.draw(scalars)
        for _ in range(depth):
            nested = [nested]
        target[slot] = nested
    else:
        target[slot] = [target[slot]]


def _write(docs: list[Any], folder: Path) -> Path:
    path = folder / "fleet.yaml"
    try:
        path.write_text(yaml.safe_dump_all(docs, allow_unicode=True, sort_keys=False))
    except (yaml.YAMLError, RecursionError, ValueError):
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=True))
    return path


@pytest.mark.parametrize("fmt", sorted(SOURCES))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_any_mutation_exits_0_or_2_with_positions(fmt: str, data: st.DataObject) -> None:
    docs = yaml.safe_load_all(yaml.safe_dump_all(SOURCES[fmt]))  # a fresh deep copy
    docs = list(docs)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        _mutate(data, docs)
    with tempfile.TemporaryDirectory() as folder:
        path = _write(docs, Path(folder))
        started = time.process_time()
        code, stderr = run_validate(path)
        elapsed = time.process_time() - started
    assert elapsed < BUDGET_S, f"validate took {elapsed:.1f}s"
    assert code in (0, 2), stderr
    if code == 2:
        problems = [line for line in stderr.splitlines()[1:] if line.startswith("  ")]
        assert problems, stderr
        assert all(POSITION.match(line) for line in problems), stderr
