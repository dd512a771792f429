"""What `cluster status`, `list` and `status` show of an HA VM beyond its node: each disk's
DRBD role and sync state per node (drbdsetup, else LINSTOR, else "unknown" with the reason,
never a failed command), fail counts, and a live migration in flight as Pacemaker reports it.

Everything is answered at the seam where the cluster's tools run on a node (the cluster's
`command`): crm_mon output captured from Pacemaker 2.1.5 (`crm_mon --output-as=xml` on CIB
files whose status holds the operations named in each file), and drbdsetup/linstor JSON in
the shape drbd-utils 9 and linstor-client print (tests/fixtures/drbd/)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmfleet.cli.main import app
from vmfleet.drivers.commands import CommandError, RecordingRunner
from vmfleet.drivers.drbd import parse_drbdsetup, parse_linstor
from vmfleet.drivers.pacemaker import INFINITY, parse_status
from vmfleet.engine import ha
from vmfleet.engine.context import FleetContext
from vmfleet.engine.ha.status import HaVmState
from vmfleet.errors import OperationTimeout
from vmfleet.spec.load import load
from vmfleet.state.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
PCMK = FIXTURES / "pacemaker"
DRBD = FIXTURES / "drbd"
NOT_FOUND = 127

FLEET = """
fleet: t
hosts:
  n1: {uri: "test:///default", pool: default-pool, capacity: {cpus: 8, memory: 8GiB}}
  n2: {uri: "test:///default", pool: default-pool, capacity: {cpus: 8, memory: 8GiB}}
clusters:
  c:
    nodes: [n1, n2]
    fencing: {enabled: false}
    storage: {type: linstor, pool: lv_part_pool, replicas: 2}
    command: COMMAND
vms:
  a: {ha: c, nics: [], memory: 256MiB, disk: 1GiB}
"""


def crm_mon(name: str) -> str:
    return (PCMK / f"crm_mon-{name}.xml").read_text()


def drbd(name: str) -> str:
    return (DRBD / name).read_text()


def cluster(
    runner: RecordingRunner,
    *,
    crm: str = "started",
    drbdsetup: dict[str, str | None] | None = None,
    linstor: str | None = None,
    libvirt: dict[str, str] | None = None,
) -> RecordingRunner:
    """Script both nodes behind `node NAME ...`: crm_mon, virsh list, drbdsetup (None: not
    installed, the shell's exit 127) and linstor."""
    for node in ("n1", "n2"):
        runner.script(["node", node, "crm_mon"], stdout=crm_mon(crm))
        runner.script(["node", node, "virsh"], stdout=(libvirt or {"n1": "a\n"}).get(node, ""))
        answer = (drbdsetup or {}).get(node)
        if answer is None:
            runner.script(
                ["node", node, "drbdsetup"],
                returncode=NOT_FOUND,
                stderr="sh: 1: drbdsetup: not found",
            )
        else:
            runner.script(["node", node, "drbdsetup"], stdout=drbd(answer))
        if linstor is None:
            runner.script(
                ["node", node, "linstor"], returncode=NOT_FOUND, stderr="sh: 1: linstor: not found"
            )
        else:
            runner.script(["node", node, "linstor"], stdout=drbd(linstor))
    return runner


@pytest.fixture
def context(
    tmp_path: Path, fleet_file: Callable[[str], Path]
) -> Callable[[RecordingRunner], FleetContext]:
    def make(runner: RecordingRunner, command: str = '[node, "{node}"]') -> FleetContext:
        loaded = load(fleet_file(FLEET.replace("COMMAND", command)))
        state = tmp_path / "state"
        return FleetContext(loaded=loaded, store=Store(state), state_dir=state, runner=runner)

    return make


def vm_a(ctx: FleetContext) -> HaVmState:
    (report,) = ha.status(ctx)
    (vm,) = report.vms
    return vm


# --- DRBD per disk ----------------------------------------------------------------------------


def test_a_primary_up_to_date_with_a_peer_syncing_at_42_5_percent(
    context: Callable[[RecordingRunner], FleetContext],
) -> None:
    runner = cluster(
        RecordingRunner(),
        drbdsetup={"n1": "drbdsetup-n1-syncing.json", "n2": "drbdsetup-n2-syncing.json"},
    )
    vm = vm_a(context(runner))
    assert (vm.state, vm.nodes, vm.fail_count, vm.problem) == ("started", ("n1",), 2, None)
    (disk,) = vm.disks
    assert (disk.resource, disk.promoted_on, disk.state) == ("a_sda", ("n1",), "syncing 42.5%")
    assert [(r.node, r.role, r.disk) for r in disk.replicas] == [
        ("n1", "Primary", "UpToDate"),
        ("n2", "Secondary", "Inconsistent"),
    ]
    peer = disk.replicas[0].peers[0]
    assert (peer.node, peer.connection, peer.replication, peer.disk, peer.in_sync) == (
        "n2", "Connected", "SyncSource", "Inconsistent", 42.5,
    )  # fmt: skip
    # each node's own drbdsetup, through the cluster's node command
    assert ("node", "n2", "drbdsetup", "status", "--json") in runner.argvs()


def test_a_disconnected_peer_shows_the_disk_degraded(
    context: Callable[[RecordingRunner], FleetContext],
) -> None:
    runner = cluster(
        RecordingRunner(),
        drbdsetup={"n1": "drbdsetup-n1-disconnected.json", "n2": "drbdsetup-n2-disconnected.json"},
    )
    (disk,) = vm_a(context(runner)).disks
    assert disk.state == ("degraded (n1: peer n2 Connecting, n2: peer n1 StandAlone, n2: Outdated)")
    assert disk.replicas[0].peers[0].replication == "Off"


def test_without_drbdsetup_the_linstor_view_is_used(
    context: Callable[[RecordingRunner], FleetContext],
) -> None:
    runner = cluster(RecordingRunner(), linstor="linstor-resource-list.json")
    (disk,) = vm_a(context(runner)).disks
    assert disk.state == "syncing 42.5%"
    assert [(r.node, r.role, r.disk) for r in disk.replicas] == [
        ("n1", "Primary", "UpToDate"),
        ("n2", "Secondary", "Inconsistent"),
    ]
    peer = disk.replicas[1].peers[0]
    assert (peer.node, peer.connection, peer.replication, peer.disk) == (
        "n1", "Connected", "SyncTarget", "UpToDate",
    )  # fmt: skip
    assert ("node", "n1", "linstor", "--machine-readable", "resource", "list") in runner.argvs()


def test_without_drbdsetup_or_linstor_the_disks_are_unknown_and_the_rest_is_shown(
    context: Callable[[RecordingRunner], FleetContext],
) -> None:
    vm = vm_a(context(cluster(RecordingRunner())))
    assert (vm.state, vm.nodes, vm.problem) == ("started", ("n1",), None)
    (disk,) = vm.disks
    assert disk.state == "unknown (no drbdsetup, no linstor)"
    assert disk.promoted_on == ("n1",) and disk.replicas == ()


def test_a_tool_that_cannot_start_here_counts_as_missing_and_the_local_node_is_named(
    context: Callable[[RecordingRunner], FleetContext],
) -> None:
    """Tools on this machine (no `command`): drbdsetup is read once; the node it describes
    is the cluster node that is none of its peers."""
    runner = RecordingRunner()
    runner.script(["crm_mon"], stdout=crm_mon("started"))
    runner.script(["virsh"], stdout="a\n")
    runner.script(["drbdsetup"], stdout=drbd("drbdsetup-n1-syncing.json"))
    (disk,) = vm_a(context(runner, "[]")).disks
    assert [(r.node, r.role) for r in disk.replicas] == [("n1", "Primary")]
    for tool in ("drbdsetup", "linstor"):
        missing = CommandError(argv=[tool], returncode=None, stderr=b"")
        runner.script([tool], raises=missing)
    (disk,) = vm_a(context(runner, "[]")).disks
    assert disk.state == "unknown (no drbdsetup, no linstor)"


def test_parsers_keep_only_volume_0_of_the_asked_node() -> None:
    mine = parse_drbdsetup(drbd("drbdsetup-n1-syncing.json"), node="n1")
    assert [r.name for r in mine] == ["a_sda", "other_sda"]
    assert [r.node for r in parse_linstor(drbd("linstor-resource-list.json"), node="n2")] == ["n2"]
    assert len(parse_linstor(drbd("linstor-resource-list.json"), node=None)) == 2


def test_output_of_another_shape_gives_a_reason_or_defaults_never_a_crash(
    context: Callable[[RecordingRunner], FleetContext],
) -> None:
    runner = cluster(RecordingRunner())
    runner.script(["node", "n1", "drbdsetup"], stdout="drbdsetup: unknown option --json")
    (disk,) = vm_a(context(runner)).disks
    assert disk.state.startswith("unknown (drbdsetup printed something that is not JSON")
    runner.script(["node", "n1", "drbdsetup"], raises=OperationTimeout("killed"))
    (disk,) = vm_a(context(runner)).disks
    assert disk.state.startswith("unknown (drbdsetup did not answer within 30 s, no linstor;")
    odd = parse_drbdsetup('[{"name": "a_sda", "devices": 3, "connections": ["x", {}]}]', node="n1")
    assert [(r.role, r.disk, len(r.peers)) for r in odd] == [("Unknown", "DUnknown", 1)]
    assert parse_linstor('[[{"name": "a_sda", "node_name": "n1", "volumes": [1]}]]', node="n1")


# --- Pacemaker's view: migration in flight, fail counts --------------------------------------


def test_a_pending_migrate_to_is_a_migration_and_its_target_copy_is_no_error(
    context: Callable[[RecordingRunner], FleetContext],
) -> None:
    """Pacemaker 2.1 shows the operation as the role (`Migrating`), not a `pending` attribute;
    libvirt on the target already lists the incoming domain."""
    runner = cluster(RecordingRunner(), crm="migrate-to", libvirt={"n1": "a\n", "n2": "a\n"})
    vm = vm_a(context(runner))
    assert (vm.state, vm.where, vm.problem) == ("migrating", "n1 -> ?", None)


def test_a_pending_migrate_from_names_both_ends(
    context: Callable[[RecordingRunner], FleetContext],
) -> None:
    runner = cluster(RecordingRunner(), crm="migrate-from", libvirt={"n1": "a\n", "n2": "a\n"})
    vm = vm_a(context(runner))
    assert (vm.state, vm.where, vm.outside) == ("migrating", "n1 -> n2", ())
    assert vm.migration is not None and (vm.migration.source, vm.migration.target) == ("n1", "n2")


def test_without_a_migration_a_second_libvirt_copy_is_still_an_error(
    context: Callable[[RecordingRunner], FleetContext],
) -> None:
    runner = cluster(RecordingRunner(), libvirt={"n1": "a\n", "n2": "a\n"})
    assert vm_a(context(runner)).problem == "running outside Pacemaker on n2"


def test_a_resource_still_stopping_counts_as_active_but_not_settled() -> None:
    """`stop` and `down` wait until it is active nowhere; `running_on` (settled) skips it."""
    status = parse_status(crm_mon("started").replace('role="Started"', 'role="Stopping"', 1))
    assert status.active_on("p_virtdom_a") == ["n1"] and status.running_on("p_virtdom_a") == []


def test_a_monitor_in_flight_leaves_a_running_resource_settled_where_it_runs() -> None:
    """Right after a start (a failover) crm_mon shows the first monitor pending; status must
    not flicker to "monitoring on no node" and back. A probe where it is not active stays
    pending there (and it is not running there)."""
    shown = crm_mon("started").replace('role="Started"', 'role="Started" pending="Monitoring"', 1)
    status = parse_status(shown)
    assert status.running_on("p_virtdom_a") == ["n1"]
    probing = shown.replace('active="true"', 'active="false"', 1)
    assert parse_status(probing).running_on("p_virtdom_a") == []


def test_an_endless_fail_count_is_read_as_infinity() -> None:
    status = parse_status(crm_mon("started").replace('fail-count="2"', 'fail-count="INFINITY"'))
    assert status.fail_counts == (("n1", "p_virtdom_a", INFINITY),)


# --- the commands -----------------------------------------------------------------------------

NODE_SCRIPT = """#!/bin/sh
# a cluster node for tests: answers its tools from the files in DIR/<node>/
node=$1; shift
dir="DIR/$node"
case "$1" in
  crm_mon) cat "$dir/crm_mon.xml" ;;
  virsh) cat "$dir/virsh" ;;
  drbdsetup|linstor)
    [ -e "$dir/$1.json" ] || { echo "sh: $1: not found" >&2; exit 127; }
    cat "$dir/$1.json" ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def nodes(tmp_path: Path, fleet_file: Callable[[str], Path]) -> Path:
    """A fleet file whose cluster nodes are a script serving the fixtures (n1 syncing as
    SyncSource, n2 without drbdsetup and linstor)."""
    script = tmp_path / "node"
    script.write_text(NODE_SCRIPT.replace("DIR", str(tmp_path)))
    script.chmod(0o755)
    for node in ("n1", "n2"):
        (tmp_path / node).mkdir()
        (tmp_path / node / "crm_mon.xml").write_text(crm_mon("started"))
        (tmp_path / node / "virsh").write_text("a\n" if node == "n1" else "")
    (tmp_path / "n1" / "drbdsetup.json").write_text(drbd("drbdsetup-n1-syncing.json"))
    return fleet_file(FLEET.replace("COMMAND", f'[{script}, "{{node}}"]'))


def test_cluster_status_shows_roles_and_sync_per_disk(nodes: Path, tmp_path: Path) -> None:
    state = ["--state", str(tmp_path / "state")]
    shown = CliRunner().invoke(app, ["cluster", "status", str(nodes), "-o", "json", *state])
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.stdout)
    vm = next(r for r in rows if r["kind"] == "vm")
    assert (vm["name"], vm["state"], vm["where"], vm["fail_count"]) == ("a", "started", "n1", 2)
    assert vm["migration"] is None
    (disk,) = vm["disks"]
    assert (disk["resource"], disk["state"], disk["promoted_on"]) == (
        "a_sda", "syncing 42.5%", ["n1"],
    )  # fmt: skip
    (replica,) = disk["replicas"]  # n2 has neither tool: its copy is not reported
    assert (replica["node"], replica["role"], replica["disk"]) == ("n1", "Primary", "UpToDate")
    assert replica["peers"][0]["in_sync"] == 42.5
    table = CliRunner().invoke(app, ["cluster", "status", str(nodes), *state])
    assert "a_sda: syncing 42.5% (n1 Primary/UpToDate)" in " ".join(table.stdout.split())


def test_list_shows_the_cluster_view_of_ha_vms(
    nodes: Path, tmp_path: Path, test_driver_daemon: None
) -> None:
    state = ["--state", str(tmp_path / "state")]
    listed = CliRunner().invoke(app, ["list", str(nodes), "-o", "json", *state])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["host"], row["state"]) == (
        "a", "n1", "started (cluster c), 2 failures",
    )  # fmt: skip
    assert row["ha"]["disks"][0]["state"] == "syncing 42.5%"
    assert row["ha"]["fail_count"] == 2
    table = CliRunner().invoke(app, ["list", str(nodes), *state])
    assert "HA disks" in table.stdout and "a_sda: syncing" in " ".join(table.stdout.split())
