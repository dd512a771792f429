"""The formats users already have load as they are, detected automatically: the replicas doc's
inventory.yml, the cluster summary's variables, and vm-operator manifests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from vmfleet.core.expand import expand
from vmfleet.errors import SpecError
from vmfleet.spec.load import load, load_text, parse
from vmfleet.spec.units import GIB, MIB

FIXTURES = Path(__file__).parent / "fixtures"


def test_replicas_inventory_is_detected_and_declares_its_network() -> None:
    loaded = load(FIXTURES / "replicas-inventory.yml")
    assert loaded.format == "ansible-inventory"
    (net_name,) = loaded.spec.networks
    assert loaded.spec.networks[net_name].cidr == "192.168.88.0/24"
    assert loaded.spec.vms["ubuntu-dev"].replicas == 3


def test_inventory_use_cases_take_vm_name_and_install_docker() -> None:
    loaded = load(FIXTURES / "replicas-usecases.yml")
    assert sorted(loaded.spec.vms) == ["dev-node", "test-vm"]
    dev = loaded.spec.vms["dev-node"]
    assert dev.memory == 2048 * MIB
    assert dev.cloud_init is not None and dev.cloud_init.packages == ["docker.io"]
    names = [i.name for i in expand(loaded.spec, fleet=loaded.name)]
    assert names[:3] == ["dev-node-0", "dev-node-1", "dev-node-2"]


def test_inventory_errors_point_into_the_inventory(fleet_file: Callable[[str], Path]) -> None:
    path = fleet_file(
        """
        vms:
          hosts:
            ubuntu-dev:
              vm_name: "ubuntu-dev"
              vm_memory: 4096
              replicas: 3
              vm_mac_addresses:
                - "52:54:00:12:34:10"
              vm_static_ips:
                - "192.168.88.10"
                - "192.168.88.11"
                - "192.168.88.12"
        """,
        name="inventory.yml",
    )
    with pytest.raises(SpecError) as caught:
        load(path)
    (problem,) = caught.value.problems
    assert problem.field == "vms.ubuntu-dev.mac_addresses"
    assert problem.position is not None
    assert (problem.position.file, problem.position.line) == (str(path), 7)
    assert "replicas is 3" in problem.message


def test_cluster_variables_map_disks_bridges_and_node_preference() -> None:
    loaded = load(FIXTURES / "cluster-vars.yml")
    assert loaded.format == "cluster-vars"
    vm = loaded.spec.vms["seroicvm01485"]
    assert (vm.vcpus, vm.memory, vm.disk) == (8, 65536 * MIB, 300 * GIB)
    assert vm.node_preference == ["seroics02744"]
    assert loaded.spec.hosts["seroics02744"].uri == "qemu+ssh://root@seroics02744/system"
    assert loaded.spec.networks["br-gic102"].bridge == "br-gic102"
    assert loaded.spec.defaults.graphics == "vnc"


def test_cluster_extra_disks_become_data_disks(fleet_file: Callable[[str], Path]) -> None:
    path = fleet_file(
        """
        vms:
          seroicvm01492:
            cpus: 16
            memory: 92160
            disks:
              - {name: sda, size: 184}
              - {name: sdb, size: 160}
            network: br-gic101
        vm_defaults: {graphics: vnc}
        """
    )
    vm = load(path).spec.vms["seroicvm01492"]
    assert vm.disk == 184 * GIB
    assert vm.data_disks is not None
    assert [(d.name, d.size) for d in vm.data_disks] == [("sdb", 160 * GIB)]


def test_kubernetes_manifests_give_vms_groups_and_boot_order() -> None:
    loaded = load(FIXTURES / "vm-groups.k8s.yaml")
    assert loaded.format == "kubernetes"
    assert loaded.name == "production"
    group = loaded.spec.groups["three-tier-app"]
    assert group.power_state == "PoweredOn"
    assert [t.members for t in group.boot_order] == [
        ["postgres-primary", "postgres-replica"],
        ["app-server-1", "app-server-2"],
        ["web-tier"],
    ]
    assert [t.delay for t in group.boot_order] == [30.0, 20.0, 0.0]
    assert loaded.spec.groups["web-tier"].group == "three-tier-app"
    web = loaded.spec.vms["web-server-1"]
    assert web.group == "web-tier"
    assert web.affinity is not None and web.affinity.zone_anti_affinity is not None
    term = web.affinity.zone_anti_affinity.required[0]
    assert term.topology_key == "topology.kubernetes.io/zone"
    assert term.label_selector[0].match_labels == {"tier": "web"}


def test_kubernetes_errors_point_into_the_right_document(fleet_file: Callable[[str], Path]) -> None:
    path = fleet_file(
        """
        apiVersion: vmoperator.vmware.com/v1alpha4
        kind: VirtualMachineGroup
        metadata: {name: g}
        spec:
          bootOrder:
          - members:
            - name: ghost
        ---
        apiVersion: vmoperator.vmware.com/v1alpha5
        kind: VirtualMachine
        metadata: {name: vm1}
        spec: {groupName: g, imageName: img}
        """
    )
    with pytest.raises(SpecError) as caught:
        load(path)
    (problem,) = caught.value.problems
    assert "unknown group member 'ghost'" in problem.message
    assert problem.position is not None and problem.position.line == 7


def test_unknown_kind_is_an_error(fleet_file: Callable[[str], Path]) -> None:
    path = fleet_file("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
    with pytest.raises(SpecError, match="unsupported kind 'Pod'"):
        load(path)


@pytest.mark.parametrize(
    "fixture",
    ["replicas-inventory.yml", "replicas-usecases.yml", "cluster-vars.yml", "vm-groups.k8s.yaml"],
)
def test_converted_native_form_loads_to_the_same_fleet(fixture: str) -> None:
    original = load(FIXTURES / fixture)
    document, _fmt = load_text((FIXTURES / fixture).read_text(), file=fixture)
    native_text = yaml.safe_dump(document.data, sort_keys=False)
    again, fmt = load_text(native_text, file="native.yaml")
    assert fmt == "native"
    reparsed = parse(again)
    assert expand(reparsed, fleet="x") == expand(original.spec, fleet="x")


def test_cluster_variables_make_pacemaker_ha_vms_with_linstor_disks() -> None:
    loaded = load(FIXTURES / "cluster-vars.yml")
    cluster = loaded.spec.clusters["cluster"]
    assert cluster.nodes == ["seroics02744"]
    assert (cluster.storage.type, cluster.storage.pool) == ("linstor", "lv_part_pool")
    assert loaded.spec.defaults.ha is not None and loaded.spec.defaults.ha.cluster == "cluster"
    warnings = " ".join(loaded.document.warnings)
    assert "fencing is off" in warnings and "add the other nodes" in warnings
