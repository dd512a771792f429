"""`serve`'s metrics and its one-call-per-host statistics on libvirt's test driver: /metrics
parsed with prometheus_client's own parser, values checked against what libvirt reports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tests.support.testfleet import domain_xml, running_fleet

from vmfleet.engine.context import FleetContext
from vmfleet.serve.app import create_app
from vmfleet.serve.service import ServedFleet, Service


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedFleet]:
    with running_fleet(tmp_path) as fleet:
        yield fleet


@pytest.fixture
def ctx(served: ServedFleet) -> FleetContext:
    return served.context()


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    matches = [
        v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items()
    ]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def test_vm_states_match_what_libvirt_reports(served: ServedFleet, ctx: FleetContext) -> None:
    client = TestClient(create_app(Service(served), token="t", reads_need_token=False))
    names = [i.name for i in ctx.instances()]
    web0, db, spare = names[0], names[2], names[3]
    conn = libvirt.open("test:///default")
    conn.lookupByName(db).destroy()  # behind vmfleet's back
    samples = scrape(client)
    for vm, expected in ((web0, "running"), (db, "shutoff"), (spare, "absent")):
        assert value(samples, "vmfleet_vm_state", vm=vm, state=expected) == 1.0
        assert value(samples, "vmfleet_vm_running", vm=vm) == float(expected == "running")
        states = [
            dict(ls)["state"]
            for n, ls in samples
            if n == "vmfleet_vm_state" and dict(ls)["vm"] == vm
        ]
        assert states == [expected]  # one state series per VM
    libvirt_state = conn.lookupByName(web0).state()[0]
    assert libvirt_state == libvirt.VIR_DOMAIN_RUNNING
    assert value(samples, "vmfleet_vm_state", vm=web0, host="local", state="running") == 1.0


def test_hosts_and_groups_are_measured(served: ServedFleet, ctx: FleetContext) -> None:
    client = TestClient(create_app(Service(served), token="t", reads_need_token=False))
    samples = scrape(client)
    info = libvirt.open("test:///default").getInfo()
    assert value(samples, "vmfleet_host_up", host="local") == 1.0
    assert value(samples, "vmfleet_host_cpus", host="local") == float(info[2])
    assert value(samples, "vmfleet_host_fleet_vms", host="local") == 3.0
    app, site = (f"{ctx.instances()[0].name.split('web')[0]}{g}" for g in ("app", "site"))
    # app's members run as its PoweredOn wants; site holds db and app, db runs, spare is not in it
    assert value(samples, "vmfleet_group_ready", group=app) == 1.0
    assert value(samples, "vmfleet_group_power_state_synced", group=app) == 1.0
    assert ("vmfleet_group_ready", (("fleet", ctx.fleet), ("group", site))) in samples


def test_an_unreachable_host_is_down_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "hosts: {gone: {uri: 'qemu+unix:///system?socket=/nonexistent/sock'}}\n"
        "images: {d: {source: /x}}\nvms: {a: {image: d}}\n"
    )
    from vmfleet.spec.load import load

    fleet = ServedFleet(load(path), state=tmp_path / "s")
    client = TestClient(create_app(Service(fleet), token="t", reads_need_token=False))
    samples = scrape(client)
    assert value(samples, "vmfleet_host_up", host="gone") == 0.0
    assert value(samples, "vmfleet_vm_state", vm="a", state="unknown") == 1.0
    fleet.close()


def test_one_bulk_stats_call_per_host_per_look_shared_by_close_requests(
    served: ServedFleet, ctx: FleetContext
) -> None:
    host = ctx.host("local")
    calls = []
    conn = host._connection()

    class Counting:  # a seam-level wrapper around the libvirt connection: counts calls
        def __getattr__(self, name: str) -> object:
            calls.append(name)
            return getattr(conn, name)

    host._conn = Counting()
    svc = Service(served)
    client = TestClient(create_app(svc, token="t", reads_need_token=False))
    scrape(client)
    calls.clear()
    svc.changed()  # as after a libvirt event: the next scrape must look again
    scrape(client)
    # one listing (no QEMU is asked for it), one bulk call for the fleet's domains
    assert calls.count("domainListGetStats") == 1 and calls.count("listAllDomains") == 1
    assert "lookupByName" not in calls and "getAllDomainStats" not in calls
    calls.clear()
    scrape(client)  # within a second of the last look, with nothing changed: reused
    assert calls == []
    host._conn = conn


def test_stats_carry_owner_and_state_from_one_call(ctx: FleetContext) -> None:
    host = ctx.host("local")
    conn = libvirt.open("test:///default")
    other = conn.defineXML(domain_xml("someone-else", "theirs", "theirs", None))
    other.create()
    asked: list[list[str]] = []
    real = host._connection()

    class Recording:  # a seam-level wrapper around the libvirt connection
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def domainListGetStats(self, doms: list[libvirt.virDomain], *rest: int) -> object:  # noqa: N802
            asked.append(sorted(d.name() for d in doms))
            return real.domainListGetStats(doms, *rest)

    host._conn = Recording()
    try:
        stats = host.all_domain_stats(fleet=ctx.fleet)
        everyone = host.all_domain_stats()
    finally:
        host._conn = real
        other.destroy()
        other.undefine()
    # only this fleet's domains were asked about (another fleet's QEMU costs nothing)
    assert asked[0] == [s.name for s in stats]
    assert "theirs" not in asked[0] and "theirs" in asked[1]
    assert "theirs" in [s.name for s in everyone]
    assert [s.name for s in stats] == sorted(i.name for i in ctx.instances()[:3])
    for s in stats:
        assert s.owner is not None and s.owner.fleet == ctx.fleet
        assert str(s.state) == "running"
        assert conn.lookupByName(s.name).UUIDString() == s.uuid


def test_readiness_latency_comes_from_the_recorded_power_on(
    served: ServedFleet, ctx: FleetContext
) -> None:
    web0 = ctx.instances()[0].name
    ctx.store.event(kind="power", vm=web0, message="started (app tier 0)")
    ctx.store.event(kind="power", vm=web0, message="ready (running)")
    (start, ready) = [at for _i, at, _vm, _k, _m in ctx.store.event_rows(objects=[web0])]
    client = TestClient(create_app(Service(served), token="t", reads_need_token=False))
    samples = scrape(client)
    assert value(samples, "vmfleet_vm_ready_seconds", vm=web0) == pytest.approx(ready - start)
    assert client.get(f"/api/v1/vms/{web0}").json()["ready_seconds"] == pytest.approx(ready - start)
