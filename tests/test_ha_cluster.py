"""HA spec and the cluster configuration vmfleet generates for it: validation of
`clusters:`/`ha:`, resource names and operations from seed 001, utilization, node
preference, anti-affinity, merging into a live CIB (idempotent, never taking over foreign
resources), removal, the `pcs` equivalent and the LINSTOR command order."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from vmfleet.core import cluster as core_cluster
from vmfleet.core.cluster import ClusterConfig, ForeignResourceError
from vmfleet.core.expand import expand
from vmfleet.drivers.pacemaker import ClusterStatus, ResourceStatus
from vmfleet.engine.ha.status import vm_state
from vmfleet.errors import SpecError
from vmfleet.spec.load import load

EXAMPLE = Path(__file__).parent.parent / "examples" / "sero-cluster.yaml"
EMPTY_CIB = (
    '<cib epoch="3" num_updates="0" admin_epoch="0"><configuration><crm_config>'
    '<cluster_property_set id="cib-bootstrap-options"><nvpair id="o1" name="stonith-enabled" '
    'value="false"/><nvpair id="o2" name="cluster-name" value="lab"/></cluster_property_set>'
    '</crm_config><nodes><node id="1" uname="seroics02744"/><node id="2" uname="seroics95861"/>'
    "</nodes><resources/><constraints/></configuration><status/></cib>"
)

BASE = """
fleet: t
hosts:
  n1: {capacity: {cpus: 4, memory: 4GiB}}
  n2: {capacity: {cpus: 4, memory: 4GiB}}
  solo: {}
networks:
  br: {mode: bridge, bridge: br0}
  lab: {mode: nat, cidr: 192.168.88.0/24}
images:
  deb: {source: /srv/deb.qcow2}
clusters:
  c:
    nodes: [n1, n2]
    fencing: {agent: fence_dummy}
    storage: {type: shared, path: /srv/shared}
vms:
"""


def seed_config() -> ClusterConfig:
    loaded = load(EXAMPLE)
    return core_cluster.wanted(
        loaded.spec, expand(loaded.spec, fleet="sero"), fleet="sero", cluster="sero"
    )


# --- validation ---------------------------------------------------------------------------

CASES = [
    ("unknown cluster", "  a: {ha: nope, nics: []}", "vms.a.ha", "unknown cluster 'nope'"),
    ("image on cluster storage", "  a: {ha: c, image: deb, nics: []}", "vms.a.image",
     "cannot clone"),
    ("nat network", "  a: {ha: c, network: lab}", "vms.a.network", "bridge networks"),
    ("preference off the cluster", "  a: {ha: c, nics: [], node_preference: solo}",
     "vms.a.node_preference", "not a node of cluster 'c'"),
    ("zone affinity", "  a: {ha: c, nics: [], affinity: {zoneAntiAffinity: "
     "{requiredDuringSchedulingIgnoredDuringExecution: {labelSelector: [{matchLabels: {a: b}}]}}}}",
     "vms.a.affinity", "per node"),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "vms", "field", "words"), CASES, ids=[c[0] for c in CASES])
def test_ha_vm_rules(
    fleet_file: Callable[[str], Path], rule: str, vms: str, field: str, words: str
) -> None:
    with pytest.raises(SpecError) as caught:
        load(fleet_file(BASE + vms))
    found = [p for p in caught.value.problems if p.field == field]
    assert found and words in found[0].message, caught.value.problems
    assert found[0].position is not None and found[0].position.line > 0


@pytest.mark.parametrize(
    ("cluster", "field", "words"),
    [
        ("{nodes: [n1, ghost], fencing: {enabled: false}, storage: {type: shared, path: /s}}",
         "clusters.c.nodes[1]", "not a host"),
        ("{nodes: [n1, solo], fencing: {enabled: false}, storage: {type: shared, path: /s}}",
         "hosts.solo.capacity", "capacity.cpus"),
        ("{nodes: [n1], fencing: {enabled: false}, storage: {type: linstor, pool: p, replicas: 2}}",
         "clusters.c.storage.replicas", "2 replicas but the cluster has 1 nodes"),
        ("{nodes: [n1, n2], storage: {type: shared, path: /s}}", "clusters.c.fencing", "no agent"),
        ("{nodes: [n1, n2], fencing: {enabled: false}, storage: {type: linstor}}",
         "clusters.c.storage", "needs `pool"),
    ],
)  # fmt: skip
def test_cluster_rules(
    fleet_file: Callable[[str], Path], cluster: str, field: str, words: str
) -> None:
    text = (
        BASE.replace(
            "  c:\n    nodes: [n1, n2]\n    fencing: {agent: fence_dummy}\n"
            "    storage: {type: shared, path: /srv/shared}\n",
            f"  c: {cluster}\n",
        )
        + "  a: {nics: []}\n"
    )
    with pytest.raises(SpecError) as caught:
        load(fleet_file(text))
    found = [p for p in caught.value.problems if p.field == field]
    assert found and words in found[0].message, caught.value.problems


def test_seed_cluster_file_loads() -> None:
    loaded = load(EXAMPLE)
    assert len(loaded.spec.vms) == 12
    assert loaded.spec.clusters["sero"].storage.type == "linstor"


# --- the CIB ------------------------------------------------------------------------------


def test_seed_resources_follow_the_summary_names_and_operations() -> None:
    fragment = core_cluster.fragment(seed_config())
    ids = [r.get("id") for r in fragment.resources]
    assert ids[:3] == ["vmf-fence", "ms_drbd_seroicvm01485_sda", "p_virtdom_seroicvm01485"]
    clone = fragment.resources[1]
    drbd = clone.find("primitive")
    assert drbd is not None and drbd.get("type") == "drbd" and drbd.get("provider") == "linbit"
    monitors = {
        (o.get("interval"), o.get("role")) for o in drbd.iter("op") if o.get("name") == "monitor"
    }
    assert monitors == {("29s", "Promoted"), ("31s", "Unpromoted")}
    meta = {n.get("name"): n.get("value") for n in clone.iterfind("meta_attributes/nvpair")}
    assert meta["promotable"] == "true" and meta["clone-max"] == "2"
    vm = fragment.resources[2]
    util = {n.get("name"): n.get("value") for n in vm.iterfind("utilization/nvpair")}
    assert util == {"cpu": "8", "host_memory": "65536", "hv_memory": "65536"}
    params = {n.get("name"): n.get("value") for n in vm.iterfind("instance_attributes/nvpair")}
    assert params["config"] == "/etc/libvirt/qemu/seroicvm01485.xml"
    standby = next(r for r in fragment.resources if r.get("id") == "p_virtdom_seroius00321")
    roles = [n.get("value") for n in standby.iter("nvpair") if n.get("name") == "target-role"]
    assert roles == ["Stopped"]


def test_seed_constraints_colocate_with_promoted_and_order_promote_then_start() -> None:
    cons = {c.get("id"): c.attrib for c in core_cluster.fragment(seed_config()).constraints}
    assert cons["vmf-col-seroicvm01492-sdb"] == {
        "id": "vmf-col-seroicvm01492-sdb", "rsc": "p_virtdom_seroicvm01492",
        "with-rsc": "ms_drbd_seroicvm01492_sdb", "with-rsc-role": "Promoted", "score": "INFINITY",
    }  # fmt: skip
    assert cons["vmf-ord-seroicvm01492-sdb"]["first-action"] == "promote"
    assert cons["vmf-ord-seroicvm01492-sdb"]["then-action"] == "start"
    assert cons["vmf-loc-seroicvm01485-seroics02744"]["score"] == "100"


def test_merge_is_idempotent_and_keeps_what_others_set() -> None:
    fragment = core_cluster.fragment(seed_config())
    once = core_cluster.merged(EMPTY_CIB, fragment, fleet="sero")
    text = ET.tostring(ET.Element("cib"), encoding="unicode").replace(
        "<cib />", f"<cib>{ET.tostring(once, encoding='unicode')}</cib>"
    )
    twice = core_cluster.merged(text, core_cluster.fragment(seed_config()), fleet="sero")
    assert core_cluster.canonical(once) == core_cluster.canonical(twice)
    options = {
        n.get("name"): n.get("value")
        for n in once.iter("nvpair")
        if n.get("id", "").startswith(("o", "vmf-options"))
    }
    assert options["cluster-name"] == "lab" and options["stonith-enabled"] == "true"
    node = once.find("nodes/node[@uname='seroics02744']/utilization")
    assert node is not None and len(node) == 3


def test_merge_refuses_a_resource_someone_else_made() -> None:
    foreign = EMPTY_CIB.replace(
        "<resources/>",
        '<resources><primitive id="p_virtdom_seroicvm01485" class="ocf" provider="heartbeat" '
        'type="VirtualDomain"/></resources>',
    )
    with pytest.raises(ForeignResourceError, match="p_virtdom_seroicvm01485"):
        core_cluster.merged(foreign, core_cluster.fragment(seed_config()), fleet="sero")


def test_without_removes_vm_resources_constraints_and_moves() -> None:
    once = core_cluster.merged(EMPTY_CIB, core_cluster.fragment(seed_config()), fleet="sero")
    ET.SubElement(
        once.find("constraints"),  # type: ignore[arg-type]
        "rsc_location",
        {"id": "cli-prefer-p_virtdom_seroicvm01485", "rsc": "p_virtdom_seroicvm01485",
         "node": "seroics95861", "score": "INFINITY"},
    )  # fmt: skip
    text = f"<cib>{ET.tostring(once, encoding='unicode')}</cib>"
    left = core_cluster.without(text, fleet="sero")
    assert [r.get("id") for r in left.iter("primitive")] == ["vmf-fence"]
    assert list(left.find("constraints") or []) == []


def test_required_anti_affinity_groups_become_utilization(
    fleet_file: Callable[[str], Path],
) -> None:
    anti = (
        "{vmAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
        "{labelSelector: [{matchLabels: {app: db}}]}}}"
    )
    loaded = load(
        fleet_file(
            BASE
            + f"  db: {{ha: c, nics: [], replicas: 3, labels: {{app: db}}, affinity: {anti}}}\n"
            + f"  web: {{ha: c, nics: [], labels: {{app: web}}, affinity: {anti}}}\n"
        )
    )
    config = core_cluster.wanted(
        loaded.spec, expand(loaded.spec, fleet="t"), fleet="t", cluster="c"
    )
    (attr,) = config.exclusive
    assert {vm.name for vm in config.vms if attr in vm.exclusive} == {"db-0", "db-1", "db-2"}
    # web does not match its own selector: it keeps a pairwise -INFINITY with each db
    assert {(c.first, c.second, c.score) for c in config.colocations} == {
        ("p_virtdom_db-0", "p_virtdom_web", "-INFINITY"),
        ("p_virtdom_db-1", "p_virtdom_web", "-INFINITY"),
        ("p_virtdom_db-2", "p_virtdom_web", "-INFINITY"),
    }


# --- commands -----------------------------------------------------------------------------


def test_pcs_commands_mirror_the_seed() -> None:
    lines = [" ".join(a) for a in core_cluster.pcs_commands(seed_config())]
    assert (
        "pcs resource promotable p_drbd_seroicvm01485_sda ms_drbd_seroicvm01485_sda "
        "promoted-max=1 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true "
        "vmfleet-fleet=sero"
    ) in lines
    assert (
        "pcs constraint order promote ms_drbd_seroicvm01485_sda then start "
        "p_virtdom_seroicvm01485 id=vmf-ord-seroicvm01485-sda"
    ) in lines


def test_linstor_sequence_follows_the_seed_order() -> None:
    config = seed_config()
    vm = next(v for v in config.vms if v.name == "seroicvm01491")
    assert core_cluster.linstor_create(config, vm) == [
        ("linstor", "resource-definition", "create", "seroicvm01491_sda"),
        ("linstor", "volume-definition", "create", "seroicvm01491_sda", "16G"),
        ("linstor", "resource", "create", "seroics95861", "seroicvm01491_sda",
         "--storage-pool", "lv_part_pool"),
        ("linstor", "resource", "create", "seroics02744", "seroicvm01491_sda",
         "--storage-pool", "lv_part_pool"),
    ]  # fmt: skip
    assert core_cluster.linstor_delete(config, vm)[-1] == (
        "linstor", "resource-definition", "delete", "seroicvm01491_sda",
    )  # fmt: skip


def test_a_vm_libvirt_runs_outside_the_cluster_is_an_error() -> None:
    config = seed_config()
    vm = config.vms[0]
    running = ResourceStatus(
        id=vm.resource, agent="ocf:heartbeat:VirtualDomain", role="Started",
        target_role="Started", active=True, failed=False, nodes=("seroics02744",),
    )  # fmt: skip
    status = ClusterStatus(nodes=(), resources=(running,))
    fine = vm_state(config, vm, status, libvirt_running={"seroics02744": [vm.name]})
    assert fine.state == "started" and fine.problem is None
    rogue = vm_state(
        config, vm, status, libvirt_running={"seroics02744": [vm.name], "seroics95861": [vm.name]}
    )
    assert rogue.problem == "running outside Pacemaker on seroics95861"


def test_a_migration_in_flight_shows_as_migrating() -> None:
    config = seed_config()
    vm = config.vms[0]
    moving = ResourceStatus(
        id=vm.resource, agent="ocf:heartbeat:VirtualDomain", role="Started",
        target_role="Started", active=True, failed=False, nodes=("seroics02744",),
        pending="Migrating",
    )  # fmt: skip
    state = vm_state(config, vm, ClusterStatus(nodes=(), resources=(moving,)))
    assert state.state == "migrating" and state.nodes == ()


def test_a_vm_still_starting_shows_the_node_it_starts_on() -> None:
    """While its start runs the VM is not settled anywhere yet, but it is on that node, not
    on "no node"."""
    config = seed_config()
    vm = config.vms[0]
    starting = ResourceStatus(
        id=vm.resource, agent="ocf:heartbeat:VirtualDomain", role="Starting",
        target_role="Started", active=True, failed=False, nodes=("seroics95861",),
        pending="Starting",
    )  # fmt: skip
    state = vm_state(config, vm, ClusterStatus(nodes=(), resources=(starting,)))
    assert (state.state, state.nodes, state.where) == ("starting", (), "seroics95861")
    stopped = replace(starting, active=False, nodes=(), pending=None, role="Stopped")
    assert vm_state(config, vm, ClusterStatus(nodes=(), resources=(stopped,))).where == ""


def test_an_unknown_network_on_an_ha_vm_is_reported_not_a_crash(
    fleet_file: Callable[[str], Path],
) -> None:
    with pytest.raises(SpecError) as caught:
        load(fleet_file(BASE + "  a: {ha: c, network: nowhere}\n"))
    assert [p.field for p in caught.value.problems] == ["vms.a.network"]
    assert "unknown network 'nowhere'" in caught.value.problems[0].message
