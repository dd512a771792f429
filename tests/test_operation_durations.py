"""Operation durations: whichever process runs an operation records how long it took in the
state store, and `serve` turns the rows into histograms when scraped (parsed here with
prometheus_client's own parser). An `up` in another process, a migration through the
migrate engine (libvirt's test driver cannot migrate: a fake at the host seam moves the
domain), the store's new table on an existing state.db, and the bounded read per scrape."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e_support import unique_fleet
from tests.support.testfleet import running_fleet
from tests.support.testhost import TestDriverHost

from vmfleet import Fleet
from vmfleet.drivers.libvirt import LibvirtHost
from vmfleet.drivers.libvirt.migration import MigrationOptions, MigrationProgress, MigrationResult
from vmfleet.serve.app import create_app
from vmfleet.serve.histograms import DurationCollector
from vmfleet.serve.service import ServedFleet, Service
from vmfleet.spec.load import load
from vmfleet.state import durations
from vmfleet.state.store import Store

ROOT = Path(__file__).resolve().parent.parent
Histogram = dict[str, Any]  # count, sum, buckets (le -> cumulative count)


def histograms(client: TestClient) -> dict[str, Histogram]:
    """operation -> its histogram, from one scrape of /metrics."""
    response = client.get("/metrics")
    assert response.status_code == 200
    out: dict[str, Histogram] = {}
    for family in text_string_to_metric_families(response.text):
        if family.name != "vmfleet_operation_duration_seconds":
            continue
        for s in family.samples:
            h = out.setdefault(s.labels["operation"], {"buckets": {}})
            if s.name.endswith("_count"):
                h["count"] = s.value
            elif s.name.endswith("_sum"):
                h["sum"] = s.value
            else:
                h["buckets"][s.labels["le"]] = s.value
    assert set(out) == set(durations.OPERATIONS)  # every series exists, at 0 when unused
    return out


@contextmanager
def served(path: Path) -> Iterator[TestClient]:
    """serve's application over the fleet file (its own store and host connections, closed
    on leaving)."""
    with ServedFleet(load(path)) as fleet:
        yield TestClient(create_app(Service(fleet), token="t", reads_need_token=False))


@pytest.fixture
def fleet_path(tmp_path: Path) -> Callable[[str, str], Path]:
    image = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)

    def write(hosts: str, vms: str) -> Path:
        path = tmp_path / "fleet.yaml"
        path.write_text(
            f"fleet: {unique_fleet('dur')}\n"
            f"hosts:\n{hosts}\n"
            f"images: {{base: {{source: {image}}}}}\n"
            "defaults: {image: base, memory: 64MiB, disk: 16MiB, ready: {wait_for: running}}\n"
            f"vms:\n{vms}\n"
        )
        return path

    return write


UP = """
import sys
from tests.support.testfleet import running_fleet
from tests.support.testhost import TestDriverHost
from vmfleet import Fleet
with Fleet.open(sys.argv[1], hosts=TestDriverHost.factory) as fleet:
    fleet.up().raise_for_failures()
"""


def up_in_another_process(path: Path) -> None:
    """`Fleet.up`, the code under `vmfleet up`, in its own process (the CLI cannot run on
    the test driver: it cannot upload volumes; `TestDriverHost` stands in at the seam)."""
    subprocess.run([sys.executable, "-c", UP, str(path)], cwd=ROOT, check=True, timeout=120)


def test_up_and_ready_in_another_process_show_in_the_histograms(
    fleet_path: Callable[[str, str], Path],
) -> None:
    path = fleet_path(
        '  local: {uri: "test:///default", domain_type: qemu, pool: default-pool}',
        "  web: {replicas: 2}\n  db: {}",
    )
    up_in_another_process(path)
    with served(path) as client:
        first = histograms(client)
        assert first["up"]["count"] == 1.0 and first["up"]["sum"] > 0
        assert first["ready"]["count"] == 3.0  # web-0, web-1, db: each started and ready once
        assert first["ready"]["buckets"]["+Inf"] == 3.0
        assert first["migration"]["count"] == 0.0
        # the test driver forgets the VMs with that process: a second run creates them again
        up_in_another_process(path)
        second = histograms(client)  # only the rows since the first scrape are read
    assert (second["up"]["count"], second["ready"]["count"]) == (2.0, 6.0)
    assert second["ready"]["sum"] >= first["ready"]["sum"]


NODE = """<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>4</active><nodes>1</nodes>
       <sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>
  <memory>4194304</memory>
  <pool type='dir'><name>pool</name><target><path>/pool-{name}</path></target></pool>
</node>
"""
DOWNTIME_MS = 42.0


class MigratingHost(TestDriverHost):
    """The host seam for a move: the test driver cannot migrate, so this defines the
    domain on the destination, starts it there and stops the source copy, as libvirt's
    migration job leaves them, and reports the downtime libvirt would have measured."""

    def migrate_live(
        self,
        name: str,
        dest: Any,
        options: MigrationOptions,
        *,
        progress: Callable[[MigrationProgress], None] | None = None,
    ) -> MigrationResult:
        began = time.monotonic()
        assert options.persist_xml is not None
        dest.define(options.persist_xml)
        dest.start(name)
        self.destroy(name)
        return MigrationResult(time.monotonic() - began, DOWNTIME_MS, "p2p")

    def copy_volume(self, pool: str, name: str, dest: Any, dest_pool: str) -> None:
        info = self.get_volume(pool, name)
        assert info is not None
        dest.create_volume(
            dest_pool,
            f"<volume><name>{name}</name><capacity unit='bytes'>{info.capacity}</capacity>"
            "</volume>",
        )

    @classmethod
    def factory(cls, uri: str, name: str) -> LibvirtHost:
        return cls(uri, name=name)


def test_a_migration_records_its_total_time_and_downtime(
    tmp_path: Path, fleet_path: Callable[[str, str], Path]
) -> None:
    hosts = []
    for name in ("h1", "h2"):  # a node file each: two private test drivers, two hosts
        (tmp_path / f"{name}.xml").write_text(NODE.replace("{name}", name))
        hosts.append(
            f'  {name}: {{uri: "test://{tmp_path}/{name}.xml", domain_type: qemu, pool: pool}}'
        )
    path = fleet_path("\n".join(hosts), "  db: {}")
    with Fleet.open(path, hosts=MigratingHost.factory) as fleet:
        fleet.up().raise_for_failures()
        ((_vm, source),) = ((vm.name, vm.host) for vm in fleet.list())
        target = "h2" if source == "h1" else "h1"
        report = fleet.migrate("db", to=target)
        assert (report.source, report.target, report.downtime_ms) == (source, target, DOWNTIME_MS)
        assert {vm.name: vm.host for vm in fleet.list()} == {"db": target}
        with served(path) as client:
            found = histograms(client)
    assert found["migration"]["count"] == 1.0
    assert found["migration"]["sum"] == pytest.approx(report.seconds)
    assert found["migration-downtime"]["count"] == 1.0
    assert found["migration-downtime"]["sum"] == pytest.approx(DOWNTIME_MS / 1000)
    assert found["migration-downtime"]["buckets"]["0.05"] == 1.0  # 42 ms <= 50 ms


def test_a_state_db_from_before_the_table_gains_it(tmp_path: Path) -> None:
    Store(tmp_path).close()
    with sqlite3.connect(tmp_path / "state.db") as db:  # as an older vmfleet left it
        db.execute("DROP TABLE durations")
    assert Store(tmp_path, readonly=True).duration_rows() == []  # read-only: read as empty
    store = Store(tmp_path)  # a writable open adds the table; nothing else changes
    durations.record(store, "up", 1.5)
    assert [(r[2], r[4]) for r in store.duration_rows()] == [("up", 1.5)]
    with pytest.raises(ValueError, match="unknown operation"):
        durations.record(store, "nap", 1.0)


def test_each_scrape_reads_only_new_rows_and_at_most_a_batch(tmp_path: Path) -> None:
    store = Store(tmp_path)
    durations.record(store, "up", 9.0)  # before serve's window: never counted
    reads: list[tuple[int, float | None, int]] = []

    def read(after: int, since: float | None, limit: int) -> list[Any]:
        reads.append((after, since, limit))
        return store.duration_rows(after=after, since=since, limit=limit)

    collector = DurationCollector(read, fleet="f", window=0.0, batch=2)
    for seconds in (0.01, 0.3, 700.0):
        durations.record(store, "ready", seconds)

    def ready() -> tuple[float, float, dict[str, float]]:
        (family,) = list(collector.collect())
        samples = [s for s in family.samples if s.labels["operation"] == "ready"]
        count = next(s.value for s in samples if s.name.endswith("_count"))
        total = next(s.value for s in samples if s.name.endswith("_sum"))
        return count, total, {s.labels["le"]: s.value for s in samples if "le" in s.labels}

    count, total, buckets = ready()
    assert (count, total) == (2.0, pytest.approx(0.31))  # a batch of 2; the rest next time
    assert (buckets["0.05"], buckets["0.25"], buckets["0.5"], buckets["+Inf"]) == (1, 1, 2, 2)
    count, total, buckets = ready()
    assert (count, buckets["600.0"], buckets["+Inf"]) == (3.0, 2.0, 3.0)
    assert reads[1][:2] == (3, None)  # after the last row read, by id alone


def test_a_group_power_on_records_each_started_members_readiness(tmp_path: Path) -> None:
    with running_fleet(tmp_path) as fleet:
        client = TestClient(create_app(Service(fleet), token="t", reads_need_token=False))
        app = next(g for g in fleet.spec.groups if g.endswith("app"))  # web-0, web-1: running
        for verb in ("off", "on", "on"):  # the second `on` finds them running
            response = client.post(
                f"/api/v1/groups/{app}/power",
                json={"action": verb},
                headers={"Authorization": "Bearer t"},
            )
            assert response.status_code == 200, response.text
        found = histograms(client)
    assert found["group-power"]["count"] == 3.0
    assert found["ready"]["count"] == 2.0  # each member started once; running ones not counted
    assert found["vm-power"]["count"] == found["up"]["count"] == 0.0
