"""The HA flows against Pacemaker's real tools on a CIB file (CIB_file, no cluster running):
`up` makes disks, definitions and one configuration change, a second `up` changes nothing,
a changed VM is updated in place, `stop`/`start` set target-role, `down` removes everything
in seed 001's vm_delete order; LINSTOR calls are recorded at the command-runner seam."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.cib import require_tools
from tests.support.runners import Passthrough
from tests.support.testhost import TestDriverHost

from vmfleet import Fleet
from vmfleet.core import cluster as core_cluster
from vmfleet.drivers.commands import RecordingRunner, SubprocessRunner
from vmfleet.engine import ha
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError
from vmfleet.spec.load import load
from vmfleet.state.store import Store


class CibFileRunner(Passthrough):
    """Real programs, with Pacemaker's tools working on one CIB file; `linstor` recorded."""

    def __init__(self, cib: Path) -> None:
        self.cib = cib
        self.linstor = RecordingRunner()
        self.linstor.script(["linstor", "--machine-readable"], stdout="[]")
        self.linstor.script(["linstor"])
        super().__init__(SubprocessRunner(env={"CIB_file": str(cib)}), {"linstor": self.linstor})


@pytest.fixture
def cluster_env(tmp_path: Path, fleet_file: Callable[[str], Path]) -> Callable[[str], FleetContext]:
    require_tools()
    cib = tmp_path / "cib.xml"
    empty = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True)
    cib.write_text(empty.stdout.replace("<nodes/>", '<nodes><node id="1" uname="n1"/></nodes>'))
    runner = CibFileRunner(cib)
    (tmp_path / "shared").mkdir()

    def make(text: str) -> FleetContext:
        loaded = load(fleet_file(text.replace("SHARED", str(tmp_path / "shared"))))
        store = Store(tmp_path / "state")
        return FleetContext(loaded=loaded, store=store, state_dir=tmp_path / "state", runner=runner)

    return make


FLEET = """
fleet: t
hosts:
  n1: {capacity: {cpus: 8, memory: 8GiB}}
  n2: {capacity: {cpus: 8, memory: 8GiB}}
clusters:
  c:
    nodes: [n1, n2]
    fencing: {enabled: false}
    storage: STORAGE
    definitions: SHARED
vms:
  a: {ha: c, nics: [], memory: 256MiB, disk: 1GiB}
  b: {ha: {cluster: c, state: stopped}, nics: [], memory: MEMORY, disk: 1GiB}
"""


def fleet(storage: str = "{type: shared, path: SHARED}", memory: str = "128MiB") -> str:
    return FLEET.replace("STORAGE", storage).replace("MEMORY", memory)


def one_node() -> str:
    """The fleet on a single node whose libvirt side is the test driver (for `Fleet`, which
    takes a lock on every host)."""
    return (
        fleet()
        .replace("  n1: {capacity", '  n1: {uri: "test:///default", pool: default-pool, capacity')
        .replace("  n2: {capacity: {cpus: 8, memory: 8GiB}}\n", "")
        .replace("nodes: [n1, n2]", "nodes: [n1]")
    )


def owned(ctx: FleetContext) -> list[str]:
    cib = ctx.runner.run(["cibadmin", "--query"]).stdout_text()
    return sorted(core_cluster.owned_resources(core_cluster.configuration(cib), "t"))


def test_up_is_idempotent_and_updates_a_changed_vm_in_place(
    cluster_env: Callable[[str], FleetContext], tmp_path: Path
) -> None:
    ctx = cluster_env(fleet())
    actions = [c.action for c in ha.up(ctx)]
    assert "cib updated" in actions
    assert (tmp_path / "shared" / "a_sda.qcow2").exists()
    assert "<name>a</name>" in (tmp_path / "shared" / "a.xml").read_text()
    assert owned(ctx) == ["p_virtdom_a", "p_virtdom_b"]
    assert ha.up(ctx) == []  # a second run changes nothing
    changed = cluster_env(fleet(memory="192MiB"))
    actions = [c.action for c in ha.up(changed)]
    assert (
        "cib updated" in actions
        and "definition " + str(tmp_path / "shared" / "b.xml") + " written" in actions
    )
    cib = changed.runner.run(["cibadmin", "--query"]).stdout_text()
    assert 'name="hv_memory" value="192"' in cib


def test_down_removes_resources_definitions_and_disks(
    cluster_env: Callable[[str], FleetContext], tmp_path: Path
) -> None:
    ctx = cluster_env(fleet())
    ha.up(ctx)
    changes = ha.down(ctx)
    assert owned(ctx) == []
    assert sorted(os.listdir(tmp_path / "shared")) == []
    order = [c.action for c in changes if c.vm == "a"]
    assert order == ["stopped", "removed from the cluster", "definition removed", "storage deleted"]
    assert ha.down(ctx)  # safe to repeat (a killed run finishes on the next)
    assert owned(ctx) == []


def test_linstor_storage_is_created_and_deleted_in_the_seed_order(
    cluster_env: Callable[[str], FleetContext],
) -> None:
    ctx = cluster_env(fleet(storage="{type: linstor, pool: pool1, replicas: 2}"))
    ha.up(ctx)
    runner = ctx.runner
    assert isinstance(runner, CibFileRunner)
    made = [a for a in runner.linstor.argvs() if "--machine-readable" not in a]
    assert made[:4] == [
        ("linstor", "resource-definition", "create", "a_sda"),
        ("linstor", "volume-definition", "create", "a_sda", "1G"),
        ("linstor", "resource", "create", "n1", "a_sda", "--storage-pool", "pool1"),
        ("linstor", "resource", "create", "n2", "a_sda", "--storage-pool", "pool1"),
    ]
    cib = runner.run(["cibadmin", "--query"]).stdout_text()
    assert 'id="ms_drbd_a_sda"' in cib and "/dev/drbd/by-res/a_sda/0" not in cib
    first_linstor = next(i for i, a in enumerate(runner.calls) if a[0] == "linstor")
    first_cib_write = next(i for i, a in enumerate(runner.calls) if "--replace" in a)
    assert first_linstor < first_cib_write  # storage before the cluster configuration


def test_stop_and_start_set_the_target_role(cluster_env: Callable[[str], FleetContext]) -> None:
    ctx = cluster_env(fleet())
    ha.up(ctx)
    ha.stop(ctx, "a")  # nothing runs in a CIB file: stopped at once
    cib = ctx.runner.run(["cibadmin", "--query"]).stdout_text()
    roles = [line for line in cib.splitlines() if "p_virtdom_a" in line and "target-role" in line]
    assert roles and 'value="Stopped"' in roles[0]


def test_fleet_up_and_down_route_ha_vms_to_the_cluster(
    cluster_env: Callable[[str], FleetContext], tmp_path: Path
) -> None:
    ctx = cluster_env(one_node())  # writes the file and sets up the CIB file
    assert ctx.instances() == []  # libvirt's side never sees HA VMs
    with Fleet.open(
        ctx.loaded.path, state=tmp_path / "state", runner=ctx.runner, hosts=TestDriverHost.factory
    ) as api:
        result = api.up()
        assert result.outcomes == ()
        assert owned(ctx) == ["p_virtdom_a", "p_virtdom_b"]
        assert api.ha_vms() == {"a", "b"}
        removed = api.down(["a"])
        assert [o.vm for o in removed.outcomes] == ["a"]
        assert owned(ctx) == ["p_virtdom_b"]


def test_a_foreign_resource_of_the_same_name_stops_up_with_a_clear_error(
    cluster_env: Callable[[str], FleetContext],
) -> None:
    ctx = cluster_env(one_node())
    runner = ctx.runner
    assert isinstance(runner, CibFileRunner)
    runner.run(
        ["cibadmin", "--create", "--scope", "resources", "--xml-text",
         '<primitive id="p_virtdom_a" class="ocf" provider="heartbeat" type="Dummy"/>'],
    )  # fmt: skip
    with pytest.raises(FleetError, match="p_virtdom_a exist in the cluster and were not made"):
        ha.up(ctx)
    cli = subprocess.run(
        [str(Path(__file__).parent.parent / ".venv/bin/vmfleet"), "up", str(ctx.loaded.path)],
        capture_output=True,
        text=True,
        env={**os.environ, "CIB_file": str(runner.cib)},
    )
    assert cli.returncode == 1 and "not made by fleet 't'" in cli.stderr, cli.stderr
    assert "Traceback" not in cli.stderr
