"""Scrape benchmarks: `/metrics` of 100 running VMs on libvirt's test driver, and of a few
running micro guests on the real libvirtd.

Each scrape is one `getAllDomainStats` call for the host plus the group conditions, rendered
by prometheus_client; measured through the ASGI app in-process (no socket), the first scrape
(which reads each domain's owner metadata once) apart from the steady ones. Every scrape
looks at the hosts afresh (serve would reuse a look for requests within a second). The
operation histograms read the durations recorded since the last scrape: measured with none
and with the most one scrape reads (SCRAPE_ROWS, written by another connection, as a CLI
run would, before each scrape and outside its time).
"""

from __future__ import annotations

import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e_support import micro_fleet_yaml
from tests.support.testfleet import domain_xml

from vmfleet.serve.app import create_app
from vmfleet.serve.histograms import SCRAPE_ROWS
from vmfleet.serve.service import ServedFleet, Service
from vmfleet.spec.load import load

VMS = 100
SCRAPES = 30


def scrape_100() -> list[dict[str, object]]:
    """Milliseconds per scrape of 100 VMs: the first, then median, p90 and worst of 30."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.yaml"
        path.write_text(
            "fleet: bscrape\nhosts: {local: {uri: 'test:///default', domain_type: qemu}}\n"
            "images: {d: {source: /x}}\ndefaults: {image: d, memory: 64MiB}\n"
            f"groups: {{all: {{members: [bvm]}}}}\nvms: {{bvm: {{replicas: {VMS}}}}}\n"
        )
        fleet = ServedFleet(load(path), state=Path(tmp) / "s")
        host = fleet.context().host("local")
        for i in fleet.context().instances():
            host.define(domain_xml("bscrape", i.name, i.template, i.index))
            host.start(i.name)
        measure = f"/metrics of {VMS} running VMs (test driver)"
        steady = _measure(fleet, measure, close=False)
        db = sqlite3.connect(Path(tmp) / "s" / "state.db")

        def backlog() -> None:  # another process's runs, recorded since the last scrape
            now = time.time()
            db.executemany(
                "INSERT INTO durations (at, operation, subject, seconds) VALUES (?, ?, ?, ?)",
                [(now, "ready", f"bvm-{n % VMS}", (n % 600) / 10) for n in range(SCRAPE_ROWS)],
            )
            db.commit()

        loaded = _measure(fleet, f"{measure}, {SCRAPE_ROWS} new durations", before=backlog)
        db.close()
        return [steady, loaded]


def scrape_micro(count: int = 4, scrapes: int = 10) -> list[dict[str, object]]:
    """Milliseconds per scrape of `count` running micro guests on qemu:///system (TCG), up
    by the CLI (readiness `running`) in its own process; the row also gives the `up` and
    `ready` histograms serve then shows, built from what that process recorded."""
    cli = [sys.executable, "-m", "vmfleet.cli.main"]
    with tempfile.TemporaryDirectory() as tmp:
        fleet = f"bscrape-{uuid.uuid4().hex[:6]}"
        path = Path(tmp) / "fleet.yaml"
        path.write_text(
            micro_fleet_yaml(fleet, replicas=count, template="bscrape", ready="running")
        )
        subprocess.run([*cli, "up", str(path)], check=True, capture_output=True)
        served = ServedFleet(load(path))  # the CLI's state folder: its durations
        try:
            measure = f"/metrics of {count} running micro guests (qemu:///system)"
            return [_measure(served, measure, scrapes=scrapes, histograms=("up", "ready"))]
        finally:
            subprocess.run([*cli, "down", str(path), "--yes"], check=True, capture_output=True)


def _measure(
    fleet: ServedFleet,
    measure: str,
    *,
    scrapes: int = SCRAPES,
    before: Callable[[], None] = lambda: None,
    close: bool = True,
    histograms: tuple[str, ...] = (),
) -> dict[str, object]:
    """Scrape once, then `scrapes` times, each a fresh look at the hosts after `before`
    (not timed); closes `fleet` when `close`. `histograms`: operations whose count and
    sum of seconds the row also gives."""
    svc = Service(fleet)
    client = TestClient(create_app(svc, token="t", reads_need_token=False))
    try:
        first = _timed(client, svc, before)
        times = [_timed(client, svc, before) for _ in range(scrapes)]
        text = client.get("/metrics").text
    finally:
        if close:
            fleet.close()
    row: dict[str, object] = {
        "measure": measure,
        "first_ms": first,
        "median_ms": statistics.median(times),
        "p90_ms": statistics.quantiles(times, n=10)[-1],
        "worst_ms": max(times),
        "vm_state_series": text.count("\nvmfleet_vm_state{"),
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            operation = sample.labels.get("operation")
            if operation in histograms and sample.name.endswith(("_count", "_sum")):
                row[f"{operation}_{sample.name.rsplit('_', 1)[1]}"] = sample.value
    return row


def _timed(client: TestClient, svc: Service, before: Callable[[], None]) -> float:
    before()
    svc.changed()  # a fresh look every time: no reuse of the last one
    start = time.perf_counter()
    response = client.get("/metrics")
    assert response.status_code == 200
    return (time.perf_counter() - start) * 1000
