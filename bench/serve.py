"""Scrape benchmark: `/metrics` of a fleet of 100 running VMs on libvirt's test driver.

Each scrape is one `getAllDomainStats` call for the host plus the group conditions, rendered
by prometheus_client; measured through the ASGI app in-process (no socket), the first scrape
(which reads each domain's owner metadata once) apart from the steady ones.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from tests.support.testfleet import domain_xml

from vmfleet.engine.context import FleetContext
from vmfleet.serve.app import create_app
from vmfleet.serve.service import Service
from vmfleet.spec.load import load
from vmfleet.state.store import Store

VMS = 100
SCRAPES = 30


def scrape_100() -> list[dict[str, object]]:
    """Milliseconds per scrape of 100 VMs: the first, then the median and worst of 30."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.yaml"
        path.write_text(
            "fleet: bscrape\nhosts: {local: {uri: 'test:///default', domain_type: qemu}}\n"
            "images: {d: {source: /x}}\ndefaults: {image: d, memory: 64MiB}\n"
            f"groups: {{all: {{members: [bvm]}}}}\nvms: {{bvm: {{replicas: {VMS}}}}}\n"
        )
        ctx = FleetContext(loaded=load(path), store=Store(Path(tmp) / "s"), state_dir=Path(tmp))
        host = ctx.host("local")
        for i in ctx.instances():
            host.define(domain_xml("bscrape", i.name, i.template, i.index))
            host.start(i.name)
        client = TestClient(create_app(Service(ctx), token="t", reads_need_token=False))
        try:
            first = _timed(client)
            times = [_timed(client) for _ in range(SCRAPES)]
            series = client.get("/metrics").text.count("\nvmfleet_vm_state{")
        finally:
            ctx.close()
    return [
        {
            "measure": f"/metrics of {VMS} running VMs (test driver)",
            "first_ms": first,
            "median_ms": statistics.median(times),
            "worst_ms": max(times),
            "vm_state_series": series,
        }
    ]


def _timed(client: TestClient) -> float:
    start = time.perf_counter()
    response = client.get("/metrics")
    assert response.status_code == 200
    return (time.perf_counter() - start) * 1000
