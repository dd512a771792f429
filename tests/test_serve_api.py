"""`serve`'s JSON API and dashboard on libvirt's test driver, through a TestClient: the
shapes (seed 004 conditions), the OpenAPI document, token rules (401 and nothing runs),
actions through the CLI's engine code, the fleet lock, and the page's fragments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from fastapi.testclient import TestClient
from tests.support.testfleet import running_fleet

from vmfleet.engine.context import FleetContext
from vmfleet.serve.app import create_app
from vmfleet.serve.service import ServedFleet, Service
from vmfleet.state import events
from vmfleet.state.store import fleet_lock

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedFleet]:
    with running_fleet(tmp_path, lock_wait=0.2) as fleet:
        yield fleet


@pytest.fixture
def ctx(served: ServedFleet) -> FleetContext:
    return served.context()


@pytest.fixture
def client(served: ServedFleet) -> TestClient:
    return TestClient(create_app(Service(served), token=TOKEN, reads_need_token=False))


def names(ctx: FleetContext) -> tuple[str, str, str, str]:
    web0, web1, db, spare = (i.name for i in ctx.instances())
    return web0, web1, db, spare


def state_of(vm: str) -> int:
    return int(libvirt.open("test:///default").lookupByName(vm).state()[0])


def test_vms_hosts_and_fleet(client: TestClient, ctx: FleetContext) -> None:
    web0, _web1, _db, spare = names(ctx)
    vms = {v["name"]: v for v in client.get("/api/v1/vms").json()}
    assert vms[web0]["state"] == "running" and vms[web0]["host"] == "local"
    assert vms[spare]["state"] == "absent" and vms[spare]["host"] is None
    assert client.get(f"/api/v1/vms/{web0}").json()["template"] == web0[:-2]
    assert client.get("/api/v1/vms/nosuch").status_code == 404
    (host,) = client.get("/api/v1/hosts").json()
    assert host["reachable"] and host["fleet_vms"] == 3
    fleet = client.get("/api/v1/fleet").json()
    assert (fleet["fleet"], fleet["vms"], fleet["running"]) == (ctx.fleet, 4, 3)


def test_groups_have_seed_004_conditions(client: TestClient, ctx: FleetContext) -> None:
    groups = client.get("/api/v1/groups").json()
    app = groups[0] if groups[0]["name"].endswith("app") else groups[1]
    assert app["powerState"] == "PoweredOn"
    ready = app["conditions"][0]
    assert set(ready) == {"type", "status", "reason", "message", "lastTransitionTime"}
    assert (ready["type"], ready["status"]) == ("Ready", "True")
    member = app["members"][0]
    assert {c["type"] for c in member["conditions"]} >= {"GroupLinked", "PowerStateSynced"}


def test_openapi_document_lists_the_api(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/v1/vms", "/api/v1/groups/{name}/power", "/api/v1/events/stream"):
        assert path in doc["paths"]
    assert "ConditionModel" in doc["components"]["schemas"]


def test_actions_need_the_token_and_a_bad_one_runs_nothing(
    client: TestClient, ctx: FleetContext
) -> None:
    web0, *_ = names(ctx)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = client.post(f"/api/v1/vms/{web0}/stop", headers=headers)
        assert response.status_code == 401
        assert state_of(web0) == libvirt.VIR_DOMAIN_RUNNING
    response = client.post(f"/api/v1/vms/{web0}/stop", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["ok"] and state_of(web0) == libvirt.VIR_DOMAIN_SHUTOFF
    found = client.get("/api/v1/events", params={"object": web0}).json()
    assert [e["reason"] for e in found] == ["action", "power"]
    assert found[1]["message"].endswith("(vmfleet stop)")


def test_reads_need_the_token_beyond_loopback(served: ServedFleet) -> None:
    client = TestClient(create_app(Service(served), token=TOKEN, reads_need_token=True))
    assert client.get("/api/v1/vms").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/").status_code == 401
    assert client.get("/api/v1/vms", headers=AUTH).status_code == 200
    client.cookies.set("vmfleet_token", TOKEN)
    assert client.get("/").status_code == 200


def test_group_power_goes_through_the_group_walk(client: TestClient, ctx: FleetContext) -> None:
    web0, web1, _db, _spare = names(ctx)
    app = web0.split("web")[0] + "app"
    response = client.post(f"/api/v1/groups/{app}/power", json={"action": "off"}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert {r["vm"] for r in response.json()["results"]} == {web0, web1}
    assert state_of(web0) == state_of(web1) == libvirt.VIR_DOMAIN_SHUTOFF
    group = client.get(f"/api/v1/groups/{app}").json()
    assert group["powerState"] == "PoweredOff"  # recorded as `vmfleet power` records it
    reasons = [e["reason"] for e in client.get("/api/v1/events").json()]
    assert "group-power" in reasons and "action" in reasons
    metrics = client.get("/metrics").text
    count = f'vmfleet_operation_duration_seconds_count{{fleet="{ctx.fleet}",operation='
    assert count + '"group-power"} 1.0' in metrics
    assert count + '"snapshot"} 0.0' in metrics


def test_an_action_waits_for_the_fleet_lock(client: TestClient, ctx: FleetContext) -> None:
    web0, *_ = names(ctx)
    app = web0.split("web")[0] + "app"
    with fleet_lock(ctx.state_dir, what="vmfleet up (a CLI run)"):
        response = client.post(f"/api/v1/groups/{app}/power", json={"action": "off"}, headers=AUTH)
    assert response.status_code == 409
    assert "vmfleet up (a CLI run)" in response.json()["error"]
    assert state_of(web0) == libvirt.VIR_DOMAIN_RUNNING


def test_snapshot_action_and_listing(client: TestClient, ctx: FleetContext) -> None:
    _web0, _web1, db, _spare = names(ctx)
    response = client.post("/api/v1/snapshots", json={"name": "s1", "vms": [db]}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["ok"]
    listed = client.get("/api/v1/snapshots", params={"vm": db}).json()
    assert [(s["vm"], s["name"]) for s in listed] == [(db, "s1")]
    (event,) = [e for e in client.get("/api/v1/events").json() if e["reason"] == "snapshot"]
    assert (event["object"], event["message"]) == (db, "snapshot s1 create: created (crash)")
    libvirt.open("test:///default").lookupByName(db).snapshotLookupByName("s1").delete()


def test_bad_input_is_a_400_with_a_message(client: TestClient) -> None:
    response = client.get("/api/v1/events", params={"since": "soon"})
    assert response.status_code == 400 and "since" in response.json()["error"]
    response = client.post("/api/v1/groups/nosuch/power", json={"action": "on"}, headers=AUTH)
    assert response.status_code == 404


def test_the_vm_route_acts_on_one_vm_not_a_template(client: TestClient, ctx: FleetContext) -> None:
    web0, web1, *_ = names(ctx)
    template = web0.rsplit("-", 1)[0]
    response = client.post(f"/api/v1/vms/{template}/stop", headers=AUTH)
    assert response.status_code == 404
    assert state_of(web0) == state_of(web1) == libvirt.VIR_DOMAIN_RUNNING


def test_events_filter_by_object_and_time(client: TestClient, ctx: FleetContext) -> None:
    events.record(ctx.store, reason="domain-crashed", obj="vm-a", message="libvirt: crashed")
    events.record(ctx.store, reason="created", obj="vm-b", message="created on local")
    found = client.get("/api/v1/events", params={"object": "vm-a", "since": "1h"}).json()
    assert [(e["object"], e["reason"], e["fleet"]) for e in found] == [
        ("vm-a", "domain-crashed", ctx.fleet)
    ]


def test_the_dashboard_renders_its_parts(client: TestClient, ctx: FleetContext) -> None:
    web0, *_ = names(ctx)
    page = client.get("/")
    assert page.status_code == 200
    assert 'src="/static/htmx.min.js"' in page.text and "http" not in page.text.split("<body")[0]
    assert web0 in client.get("/ui/fleet").text
    assert "local" in client.get("/ui/hosts").text
    assert "Ready=True" in client.get("/ui/groups").text
    assert client.get("/static/htmx.min.js").status_code == 200
    assert client.post(f"/ui/vms/{web0}/stop").status_code == 401


def test_the_event_stream_sends_each_new_event_once(served: ServedFleet, ctx: FleetContext) -> None:
    import asyncio
    import json

    from vmfleet.serve.api import sse

    svc = Service(served)
    events.record(ctx.store, reason="created", obj="old", message="before the stream")
    response = sse(svc, after=None, render=lambda e: json.dumps(e.to_json()))
    stream = response.body_iterator

    async def next_chunks(count: int) -> list[str]:
        return [str(await anext(stream)) for _ in range(count)]  # type: ignore[call-overload]

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(next_chunks(1)) == [": connected\n\n"]
        events.record(ctx.store, reason="domain-crashed", obj="vm-a", message="crashed")
        (chunk,) = loop.run_until_complete(next_chunks(1))
    finally:
        loop.run_until_complete(stream.aclose())  # type: ignore[attr-defined]
        loop.close()
    head, data = chunk.split("data: ", 1)
    assert head.startswith("id: ") and "event: event\n" in head
    assert json.loads(data)["reason"] == "domain-crashed"  # the earlier event is not resent
    assert response.media_type == "text/event-stream"
