"""HA VMs on a real two-node Pacemaker cluster (namespaces on this machine, fencing on):
`vmfleet up` with required anti-affinity puts two micro guests on different nodes,
`vmfleet stop`/`start` go through the cluster, `vmfleet cluster migrate` is live (the guest
is not rebooted), a node power cut restarts the VM on the other node with one copy,
`vmfleet down` leaves nothing behind. One cluster serves the scenarios, in order."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tests.support import images
from tests.support.pacemaker import Lab, lab

from vmfleet.core import cluster as core_cluster
from vmfleet.serve.app import create_app
from vmfleet.serve.clusters import ClusterReader
from vmfleet.serve.service import ServedFleet, Service
from vmfleet.spec.load import load

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("pacemaker")]

ROOT = Path(__file__).resolve().parents[1]
ANTI = (
    "{vmAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
    "{labelSelector: [{matchLabels: {app: micro}}]}}}"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("pcmk")
    with lab(root, size=2) as running:
        yield running


@pytest.fixture(scope="module")
def fleet(cluster: Lab) -> Path:
    path = cluster.root / "fleet.yaml"
    path.write_text(
        f"""
fleet: hae2e
hosts:
  node1: {{uri: "{uri(cluster, 1)}", capacity: {{cpus: 4, memory: 2GiB}}}}
  node2: {{uri: "{uri(cluster, 2)}", capacity: {{cpus: 4, memory: 2GiB}}}}
clusters:
  lab:
    nodes: [node1, node2]
    fencing: {{agent: external/{cluster.plugin}, params: {{hostlist: node1 node2}}}}
    storage: {{type: shared, path: {cluster.root}/shared}}
    command: [{cluster.nsx}, "{{node}}"]
    domain_type: qemu
    migration_transport: tcp
    # the lab's shared path is a local directory, which libvirt cannot know is shared
    migrate_options: --unsafe
defaults:
  ha: {{cluster: lab, force_stop: true}}
  nics: []
  vcpus: 1
  memory: 96MiB
  disk: 1GiB
  machine: pc
  kernel: {{kernel: {images.micro_kernel()}, initrd: {images.micro_initrd()},
           cmdline: "{images.MICRO_CMDLINE}"}}
  labels: {{app: micro}}
  affinity: {ANTI}
vms:
  micro: {{replicas: 2}}
"""
    )
    return path


def uri(cluster: Lab, n: int) -> str:
    """The node's own libvirtd, reached through its PID 1's view of /run."""
    pid = cluster.nodes[n - 1].init_pid
    return f"qemu+unix:///system?socket=/proc/{pid}/root/run/libvirt/libvirt-sock"


def vmfleet(*args: str) -> str:
    result = subprocess.run(
        [str(ROOT / ".venv/bin/vmfleet"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def where(cluster: Lab, vm: str) -> list[str]:
    return cluster.status().running_on(f"p_virtdom_{vm}")


def wait(cluster: Lab, what: str, check: object, timeout: float = 120) -> float:
    """Seconds until check() holds (polled, never a fixed sleep)."""
    assert callable(check)
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.25)
    return time.monotonic() - start


def copies(cluster: Lab, vm: str) -> list[str]:
    return [node for node, names in cluster.domains().items() if vm in names]


def test_up_puts_anti_affine_vms_on_different_nodes(cluster: Lab, fleet: Path) -> None:
    vmfleet("up", str(fleet))
    placed: dict[str, list[str]] = {}

    def both_placed() -> bool:
        placed.update({vm: where(cluster, vm) for vm in ("micro-0", "micro-1")})
        return all(len(nodes) == 1 for nodes in placed.values())

    wait(cluster, "both VMs", both_placed)
    assert {placed["micro-0"][0], placed["micro-1"][0]} == {"node1", "node2"}
    assert copies(cluster, "micro-0") == placed["micro-0"]
    assert "nothing to change" in vmfleet("cluster", "up", str(fleet))
    listing = vmfleet("list", str(fleet), "-o", "json")
    assert "micro-0" in listing and "cluster lab" in listing
    shown = json.loads(vmfleet("cluster", "status", str(fleet), "-o", "json"))
    vms = [row for row in shown if row["kind"] == "vm"]
    assert sorted(row["name"] for row in vms) == ["micro-0", "micro-1"]
    # shared storage: nothing to replicate, so no DRBD state is read or shown
    assert [d["state"] for row in vms for d in row["disks"]] == ["shared", "shared"]


def test_stop_and_start_go_through_the_cluster(cluster: Lab, fleet: Path) -> None:
    vmfleet("stop", str(fleet), "micro-1")
    assert where(cluster, "micro-1") == [] and copies(cluster, "micro-1") == []
    # a copy started behind Pacemaker's back is reported as an error
    node = where(cluster, "micro-0")[0]
    config = str(cluster.root / "shared" / "micro-1.xml")
    cluster.run(node, ["virsh", "-c", "qemu:///system", "create", config])
    status = subprocess.run(
        [str(ROOT / ".venv/bin/vmfleet"), "cluster", "status", str(fleet)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    cluster.run(node, ["virsh", "-c", "qemu:///system", "destroy", "micro-1"])
    assert status.returncode == 1 and "running outside Pacemaker" in status.stdout, status.stdout
    vmfleet("start", str(fleet), "micro-1")
    assert len(copies(cluster, "micro-1")) == 1
    vmfleet("stop", str(fleet), "micro-1")  # frees a node for the next scenarios


def test_migrate_is_live(cluster: Lab, fleet: Path) -> None:
    source = where(cluster, "micro-0")[0]
    target = "node2" if source == "node1" else "node1"
    started = time.monotonic()
    vmfleet("cluster", "migrate", str(fleet), "micro-0", target)
    took = time.monotonic() - started
    assert where(cluster, "micro-0") == [target]
    assert copies(cluster, "micro-0") == [target]
    reason = cluster.run(
        target, ["virsh", "-c", "qemu:///system", "domstate", "--reason", "micro-0"]
    )
    assert "migrated" in reason  # the guest came over running, it was not booted again
    cib = cluster.run(target, ["cibadmin", "--query", "--scope", "constraints"])
    assert "cli-prefer" not in cib  # the move constraint was cleared
    shown = json.loads(vmfleet("cluster", "status", str(fleet), "-o", "json"))
    (row,) = [r for r in shown if r["name"] == "micro-0"]
    assert (row["state"], row["where"], row["migration"]) == ("started", target, None)
    print(f"live migration {source} -> {target}: {took:.1f} s")
    # what serve's /metrics says of it: where the cluster runs it, and how long the move took
    found = scrape(fleet)
    assert found[("vmfleet_cluster_up", "")] == 1.0
    assert found[("vmfleet_ha_vm_node", f"node={target} vm=micro-0")] == 1.0
    assert ("vmfleet_ha_vm_node", f"node={source} vm=micro-0") not in found
    assert found[("vmfleet_ha_vm_state", "state=started vm=micro-0")] == 1.0
    assert found[("vmfleet_cluster_node_state", f"node={target} state=online")] == 1.0
    assert found[("vmfleet_operation_duration_seconds_count", "operation=ha-migration")] >= 1.0
    assert 0 < found[("vmfleet_operation_duration_seconds_sum", "operation=ha-migration")] <= took


def scrape(fleet: Path) -> dict[tuple[str, str], float]:
    """One scrape of serve's /metrics (in-process): (name, `k=v` of its labels but fleet
    and cluster, sorted, joined by spaces) → value."""
    client = TestClient(
        create_app(Service(ServedFleet(load(fleet))), token="t", reads_need_token=False)
    )
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    out = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            rest = sorted(f"{k}={v}" for k, v in s.labels.items() if k not in ("fleet", "cluster"))
            out[(s.name, " ".join(rest))] = s.value
    return out


def test_power_cut_restarts_the_vm_elsewhere_with_one_copy(cluster: Lab, fleet: Path) -> None:
    victim = where(cluster, "micro-0")[0]
    survivor = "node2" if victim == "node1" else "node1"
    served = ServedFleet(load(fleet))  # serve's watcher, as it looks every --interval
    watcher = Service(served)
    watcher.clusters = ClusterReader(watcher.ctx, max_age=0.0)
    watcher.check()
    started = time.monotonic()
    cluster.power_cut(victim)
    took = wait(
        cluster,
        "failover",
        lambda: (
            where(cluster, "micro-0") == [survivor] and copies(cluster, "micro-0") == [survivor]
        ),
    )
    assert victim in cluster.fenced or victim in {
        n.name for n in cluster.status().nodes if not n.online
    }
    print(
        f"failover after a power cut of {victim}: {took:.1f} s ({time.monotonic() - started:.1f})"
    )
    # What serve saw of it, looking as it does every --interval: the VM started on the
    # survivor, the victim's node state (a look may come while the start is still in flight:
    # serve records that too, then the start when it next looks).
    expected = ("micro-0", f"cluster lab: micro-0 started on {survivor}")
    deadline = time.monotonic() + 60
    try:
        while True:
            watcher.check()
            rows = watcher.ctx.store.event_rows(kinds=["ha-placement", "cluster-node"])
            seen = [(obj or "", message) for _id, _at, obj, _kind, message in rows]
            if expected in seen or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        watcher.stop()
        served.close()
    assert expected in seen, seen
    assert [obj for obj, _message in seen if obj.startswith("node/")] == [f"node/{victim}"], seen


def test_down_leaves_nothing_in_the_cib_or_libvirt(cluster: Lab, fleet: Path) -> None:
    vmfleet("down", str(fleet), "--yes")
    node = cluster.live_node()
    cib = cluster.run(node, ["cibadmin", "--query"])
    owned = core_cluster.owned_resources(core_cluster.configuration(cib), "hae2e")
    assert list(owned) == ["vmf-fence"]  # fencing stays: the cluster still needs it
    assert "vmf-col" not in cib and "vmf-aff" not in cib and "cli-prefer" not in cib
    assert all(names == [] for names in cluster.domains().values())
    assert sorted(p.name for p in (cluster.root / "shared").iterdir()) == []
