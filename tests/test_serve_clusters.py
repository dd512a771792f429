"""`/metrics` of a fleet with an HA cluster: Pacemaker's and DRBD's state as crm_mon,
libvirt and drbdsetup report it on the nodes (answered at the cluster's node-command seam,
with the captured outputs of tests/test_ha_drbd_status.py), read back with
`prometheus_client`'s own parser; one look serves scrapes for a while; a cluster that
cannot be read is `vmfleet_cluster_up 0`, never a failed scrape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.test_ha_drbd_status import FLEET, cluster

from vmfleet.drivers.commands import RecordingRunner
from vmfleet.engine.context import FleetContext
from vmfleet.serve.clusters import ClusterCollector, ClusterReader
from vmfleet.serve.service import QUIET_FIRST, ServedFleet, Service
from vmfleet.spec.load import load
from vmfleet.state.store import Store

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def scrape(ctx: FleetContext, reader: ClusterReader) -> Samples:
    """Every cluster sample of one scrape: (name, labels without fleet/cluster) → value."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(reader.looks, fleet=ctx.fleet))
    out: Samples = {}
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.startswith(("vmfleet_cluster", "vmfleet_ha_", "vmfleet_drbd_")):
                continue
            assert (s.labels["fleet"], s.labels.get("cluster", "c")) == ("t", "c")
            labels = tuple(
                sorted((k, v) for k, v in s.labels.items() if k not in ("fleet", "cluster"))
            )
            out[(s.name, labels)] = s.value
    return out


def context(
    tmp_path: Path, fleet_file: Callable[[str], Path], runner: RecordingRunner
) -> FleetContext:
    loaded = load(fleet_file(FLEET.replace("COMMAND", '[node, "{node}"]')))
    state = tmp_path / "state"
    return FleetContext(loaded=loaded, store=Store(state), state_dir=state, runner=runner)


def test_pacemaker_and_drbd_state_as_metrics(
    tmp_path: Path, fleet_file: Callable[[str], Path]
) -> None:
    runner = cluster(
        RecordingRunner(),
        drbdsetup={"n1": "drbdsetup-n1-syncing.json", "n2": "drbdsetup-n2-syncing.json"},
    )
    ctx = context(tmp_path, fleet_file, runner)
    found = scrape(ctx, ClusterReader(ctx))
    expected = {
        key("vmfleet_cluster_up"): 1.0,
        key("vmfleet_cluster_quorum"): 1.0,
        key("vmfleet_cluster_node_state", node="n1", state="online"): 1.0,
        key("vmfleet_cluster_node_state", node="n2", state="online"): 1.0,
        key("vmfleet_ha_vm_state", vm="a", state="started"): 1.0,
        key("vmfleet_ha_vm_node", vm="a", node="n1"): 1.0,
        key("vmfleet_ha_vm_fail_count", vm="a"): 2.0,
        key("vmfleet_ha_vm_outside_nodes", vm="a"): 0.0,
        key("vmfleet_ha_disk_state", vm="a", resource="a_sda", state="syncing"): 1.0,
        key("vmfleet_drbd_role", resource="a_sda", node="n1", role="Primary"): 1.0,
        key("vmfleet_drbd_role", resource="a_sda", node="n2", role="Secondary"): 1.0,
        key("vmfleet_drbd_disk_state", resource="a_sda", node="n1", state="UpToDate"): 1.0,
        key("vmfleet_drbd_disk_state", resource="a_sda", node="n2", state="Inconsistent"): 1.0,
        key("vmfleet_drbd_peer_connected", resource="a_sda", node="n1", peer="n2"): 1.0,
        key("vmfleet_drbd_peer_in_sync_percent", resource="a_sda", node="n1", peer="n2"): 42.5,
    }
    assert {k: v for k, v in found.items() if k in expected} == expected
    states = [k for k in found if k[0] == "vmfleet_ha_vm_state"]
    assert len(states) == 1  # one state series per VM: the current one
    assert ("vmfleet_cluster_gather_seconds", ()) in found


def test_a_disconnected_peer_is_a_degraded_disk_and_a_peer_not_connected(
    tmp_path: Path, fleet_file: Callable[[str], Path]
) -> None:
    runner = cluster(
        RecordingRunner(),
        drbdsetup={"n1": "drbdsetup-n1-disconnected.json", "n2": "drbdsetup-n2-disconnected.json"},
    )
    ctx = context(tmp_path, fleet_file, runner)
    found = scrape(ctx, ClusterReader(ctx))
    disk = [k for k in found if k[0] == "vmfleet_ha_disk_state"]
    assert disk == [
        ("vmfleet_ha_disk_state", (("resource", "a_sda"), ("state", "degraded"), ("vm", "a")))
    ]
    peers = {k[1]: v for k, v in found.items() if k[0] == "vmfleet_drbd_peer_connected"}
    assert 0.0 in peers.values()


def test_one_look_serves_scrapes_for_a_while(
    tmp_path: Path, fleet_file: Callable[[str], Path]
) -> None:
    runner = cluster(RecordingRunner())
    ctx = context(tmp_path, fleet_file, runner)
    reader = ClusterReader(ctx, max_age=60.0)
    scrape(ctx, reader)
    asked = len(runner.argvs())
    scrape(ctx, reader)
    assert len(runner.argvs()) == asked  # no command ran for the second scrape
    fresh = ClusterReader(ctx, max_age=0.0)
    scrape(ctx, fresh)
    scrape(ctx, fresh)
    assert len(runner.argvs()) == 3 * asked


def test_a_cluster_that_does_not_answer_is_down_not_a_failed_scrape(
    tmp_path: Path, fleet_file: Callable[[str], Path]
) -> None:
    runner = RecordingRunner()
    for node in ("n1", "n2"):
        runner.script(
            ["node", node, "crm_mon"],
            returncode=102,
            stderr="crm_mon: Connection to cluster failed",
        )
    ctx = context(tmp_path, fleet_file, runner)
    found = scrape(ctx, ClusterReader(ctx))
    assert found[("vmfleet_cluster_up", ())] == 0.0
    assert not [k for k in found if k[0].startswith(("vmfleet_ha_", "vmfleet_drbd_"))]


def test_serve_writes_an_event_when_the_cluster_moves_a_vm_or_stops_answering(
    tmp_path: Path, fleet_file: Callable[[str], Path]
) -> None:
    runner = cluster(RecordingRunner())  # a started on n1
    served = ServedFleet(
        load(fleet_file(FLEET.replace("COMMAND", '[node, "{node}"]'))),
        state=tmp_path / "state",
        runner=runner,
    )
    svc = Service(served)
    svc.clusters = ClusterReader(svc.ctx, max_age=0.0)  # every check looks again

    def new_events() -> list[tuple[str, str, str]]:
        rows = svc.ctx.store.event_rows(kinds=[*QUIET_FIRST, "cluster-unreachable"])
        return [(obj or "", kind, message) for _id, _at, obj, kind, message in rows]

    try:
        svc.check()
        svc.check()
        assert new_events() == []  # where things are at the first look is no news
        cluster(runner, crm="migrate-from", libvirt={"n1": "a\n", "n2": "a\n"})
        svc.check()
        assert new_events() == [("a", "ha-placement", "cluster c: a migrating on n1 -> n2")]
        for node in ("n1", "n2"):
            runner.script(["node", node, "crm_mon"], returncode=102, stderr="crm_mon: no cluster")
        svc.check()
        svc.check()
        (down,) = new_events()[1:]
        assert down[:2] == ("cluster/c", "cluster-unreachable") and "crm_mon" in down[2]
        cluster(runner)
        svc.check()
        assert new_events()[2:] == [
            ("cluster/c", "cluster-reachable", "cluster c answers"),
            ("a", "ha-placement", "cluster c: a started on n1"),
        ]
    finally:
        svc.stop()
        served.close()
