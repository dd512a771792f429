"""Generated CIBs under Pacemaker's real scheduler (crm_simulate): DRBD clones promoted
where their VM runs, utilization, node preference, anti-affinity, node failure, and the
seed's twelve VMs; plus crm_verify on the exported configuration."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.cib import require_tools, simulate, status_of, with_online_nodes

from vmfleet.core import cluster as core_cluster
from vmfleet.core.expand import expand
from vmfleet.drivers.pacemaker import ClusterStatus
from vmfleet.spec.load import load

EXAMPLE = Path(__file__).parent.parent / "examples" / "sero-cluster.yaml"

pytestmark = pytest.mark.usefixtures("pacemaker_tools")


@pytest.fixture
def pacemaker_tools() -> None:
    require_tools()


def cib_file(fleet: Path, tmp_path: Path, cluster: str) -> tuple[Path, list[str]]:
    loaded = load(fleet)
    config = core_cluster.wanted(
        loaded.spec, expand(loaded.spec, fleet=loaded.name), fleet=loaded.name, cluster=cluster
    )
    nodes = list(config.spec.nodes)
    root = core_cluster.standalone(core_cluster.fragment(config), fleet=loaded.name, nodes=nodes)
    path = tmp_path / "cib.xml"
    path.write_text(ET.tostring(with_online_nodes(root, nodes), encoding="unicode"))
    return path, nodes


def vm_nodes(status: ClusterStatus, vm: str) -> list[str]:
    return status.running_on(f"p_virtdom_{vm}")


def promoted(status: ClusterStatus, resource: str) -> list[str]:
    return [
        n for r in status.resource(f"p_drbd_{resource}") if r.role == "Promoted" for n in r.nodes
    ]


TWO_NODES = """
fleet: t
hosts:
  n1: {capacity: {cpus: 4, memory: 4GiB}}
  n2: {capacity: {cpus: 4, memory: 4GiB}}
clusters:
  c:
    nodes: [n1, n2]
    fencing: {agent: fence_dummy}
    storage: {type: linstor, pool: p}
defaults: {ha: c, nics: []}
vms:
"""


def test_seed_cluster_starts_every_vm_on_its_preferred_node_with_promoted_disks(
    tmp_path: Path,
) -> None:
    cib, _ = cib_file(EXAMPLE, tmp_path, "sero")
    status = simulate(cib, tmp_path / "out.xml")
    loaded = load(EXAMPLE)
    for name, vm in loaded.spec.vms.items():
        where = vm_nodes(status, name)
        if vm.ha is not None and vm.ha.state == "stopped":
            assert where == [], name  # the standby VMs stay defined, not running
            continue
        assert where == list(vm.node_preference or []), name
        for disk in ["sda"] + [f"sd{chr(ord('b') + i)}" for i in range(len(vm.data_disks or []))]:
            assert promoted(status, f"{name}_{disk}") == where, (name, disk)


def test_node_failure_moves_vms_with_their_promoted_disks(tmp_path: Path) -> None:
    cib, _ = cib_file(EXAMPLE, tmp_path, "sero")
    simulate(cib, tmp_path / "up.xml")
    status = simulate(tmp_path / "up.xml", tmp_path / "fail.xml", "--node-fail", "seroics02744")
    for vm in ("seroicvm01485", "seroicvm01488", "seroius15078"):
        assert vm_nodes(status, vm) == ["seroics95861"], vm
        assert promoted(status, f"{vm}_sda") == ["seroics95861"], vm


def test_required_anti_affinity_keeps_vms_apart_even_after_a_node_fails(
    fleet_file: Callable[[str], Path], tmp_path: Path
) -> None:
    anti = (
        "{vmAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
        "{labelSelector: [{matchLabels: {app: db}}]}}}"
    )
    path = fleet_file(
        TWO_NODES
        + f"""
  db:
    replicas: 2
    memory: 512MiB
    disk: 1GiB
    labels: {{app: db}}
    affinity: {anti}
"""
    )
    cib, _ = cib_file(path, tmp_path, "c")
    status = simulate(cib, tmp_path / "up.xml")
    assert sorted(vm_nodes(status, "db-0") + vm_nodes(status, "db-1")) == ["n1", "n2"]
    survivor = vm_nodes(status, "db-0")[0]
    lost = "n2" if survivor == "n1" else "n1"
    status = simulate(tmp_path / "up.xml", tmp_path / "fail.xml", "--node-fail", lost)
    assert vm_nodes(status, "db-0") == [survivor]
    assert vm_nodes(status, "db-1") == []  # never on the node db-0 holds


def test_utilization_leaves_a_vm_stopped_when_no_node_has_room(
    fleet_file: Callable[[str], Path], tmp_path: Path
) -> None:
    path = fleet_file(
        TWO_NODES
        + """
  big: {replicas: 3, vcpus: 3, memory: 1GiB, disk: 1GiB}
"""
    )
    cib, _ = cib_file(path, tmp_path, "c")
    status = simulate(cib, tmp_path / "up.xml")
    placed = [vm_nodes(status, f"big-{i}") for i in range(3)]
    assert sorted(len(p) for p in placed) == [0, 1, 1]  # 3 vCPUs each, 4 per node
    assert sorted(n for p in placed for n in p) == ["n1", "n2"]


def test_exported_cib_passes_crm_verify(tmp_path: Path) -> None:
    out = subprocess.run(
        [".venv/bin/vmfleet", "cluster", "export", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    path = tmp_path / "export.xml"
    path.write_text(out.stdout)
    verify = subprocess.run(
        ["crm_verify", "--xml-file", str(path), "-V"], capture_output=True, text=True
    )
    # Warnings about the (empty) status are expected: no node has joined this file.
    errors = [line for line in verify.stderr.splitlines() if "error" in line.lower()]
    assert errors == [], verify.stderr
    assert status_of(path).resources
