"""The dashboard: one server-rendered page (Jinja2) whose parts htmx refreshes, with the
event list fed by server-sent events. No build step, no CDN: htmx and its SSE extension are
vendored in `static/`. Buttons post to /ui/... routes that call the same `Service` actions
as the API (so the same fleet lock and token rules) and answer with a line of text."""

from __future__ import annotations

import collections
import itertools
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import HTMLResponse, PlainTextResponse, StreamingResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from vmfleet.core import groups as core
from vmfleet.engine.monitor import FleetView, HostView, VmView
from vmfleet.errors import UsageError
from vmfleet.serve.api import Svc, sse
from vmfleet.serve.service import ActionResult
from vmfleet.spec.units import format_duration, format_size
from vmfleet.state import events

STATIC = Path(__file__).parent / "static"
HISTORY = 30  # samples per VM for the sparklines
_env = Environment(
    loader=PackageLoader("vmfleet.serve", "templates"), autoescape=select_autoescape(["html"])
)


class History:
    """The last few (time, CPU seconds, memory bytes) samples per VM, for sparklines."""

    def __init__(self) -> None:
        self._samples: dict[str, collections.deque[tuple[float, float, float]]] = {}
        self._lock = threading.Lock()

    def add(self, view: FleetView) -> None:
        with self._lock:
            for v in view.vms:
                if v.stats is None or v.stats.cpu_seconds is None:
                    continue
                memory = v.stats.rss_bytes or v.stats.memory_bytes or 0
                samples = self._samples.setdefault(v.name, collections.deque(maxlen=HISTORY))
                samples.append((view.at, v.stats.cpu_seconds, float(memory)))

    def cpu(self, vm: str) -> list[float]:
        """CPU use between samples, in percent of one CPU."""
        with self._lock:
            s = list(self._samples.get(vm, ()))
        return [
            max(0.0, 100.0 * (b[1] - a[1]) / (b[0] - a[0]))
            for a, b in itertools.pairwise(s)
            if b[0] > a[0]
        ]

    def memory(self, vm: str) -> list[float]:
        with self._lock:
            return [m for _t, _c, m in self._samples.get(vm, ())]


def spark(values: list[float], *, ceiling: float | None = None) -> str:
    """A tiny inline SVG line of the values (nothing to draw: an empty string)."""
    if len(values) < 2:
        return ""
    top = ceiling or max(values) or 1.0
    width, height = 60, 16
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - min(v, top) / top * (height - 2) - 1:.1f}"
        for i, v in enumerate(values)
    )
    return (
        f'<svg class="spark" width="{width}" height="{height}" aria-hidden="true">'
        f'<polyline fill="none" stroke="#3c7be0" stroke-width="1.5" points="{points}"/></svg>'
    )


def _vm_row(v: VmView, history: History) -> dict[str, Any]:
    s = v.stats
    return {
        "name": v.name,
        "state": v.state,
        "host": v.host,
        "ips": list(v.ips),
        "uptime": format_duration(s.uptime_seconds) if s and s.uptime_seconds else "—",
        "vcpus": s.vcpus if s and s.vcpus is not None else "—",
        "memory": format_size(s.memory_bytes) if s and s.memory_bytes else "—",
        "cpu_spark": spark(history.cpu(v.name)),
        "mem_spark": spark(history.memory(v.name)),
    }


def _pct(part: int, whole: int | None) -> int:
    return min(100, round(100 * part / whole)) if whole else 0


def _host_row(h: HostView) -> dict[str, Any]:
    return {
        "name": h.name,
        "uri": h.uri,
        "reachable": h.reachable,
        "error": h.error,
        "vcpus_text": f"{h.allocated_vcpus} of {h.cpus}",
        "vcpu_pct": _pct(h.allocated_vcpus, h.cpus),
        "memory_text": f"{format_size(h.allocated_memory_bytes)} of "
        f"{format_size(h.memory_bytes or 0)}",
        "memory_pct": _pct(h.allocated_memory_bytes, h.memory_bytes),
    }


def _group_rows(svc: Svc, view: FleetView) -> list[dict[str, Any]]:
    spec, instances = svc.ctx.loaded.spec, svc.ctx.instances()
    by_name = {g.name: g for g in view.groups}
    rows = []
    for g in view.groups:
        depth, parent = 0, g.parent
        while parent is not None and parent in by_name and depth < len(by_name):
            depth, parent = depth + 1, by_name[parent].parent
        tiers = core.walk(spec, instances, g.name).tiers
        rows.append(
            {
                "name": g.name,
                "depth": depth,
                "ready": all(c.status == "True" for c in g.conditions),
                "power_state": g.power_state,
                "conditions": g.conditions,
                "members": g.members,
                "tiers": " → ".join(
                    ", ".join([*t.vms, *(w.group for w in t.groups)]) for t in tiers
                )
                if len(tiers) > 1
                else "",
            }
        )
    return rows


def _summary(view: FleetView) -> str:
    running = sum(1 for v in view.vms if v.state == "running")
    ready = sum(1 for g in view.groups if all(c.status == "True" for c in g.conditions))
    up = sum(1 for h in view.hosts if h.reachable)
    return (
        f"{running}/{len(view.vms)} VMs running · {up}/{len(view.hosts)} hosts · "
        f"{ready}/{len(view.groups)} groups ready · {time.strftime('%H:%M:%S')}"
    )


def _event_row(e: events.Event) -> dict[str, Any]:
    return {
        "clock": time.strftime("%H:%M:%S", time.localtime(e.time)),
        "subject": e.subject,
        "reason": e.reason,
        "message": e.message,
    }


def _said(results: list[ActionResult]) -> PlainTextResponse:
    failed = [r for r in results if not r.ok]
    text = "; ".join(f"{r.vm}: {r.detail}" for r in results) or "nothing to do"
    return PlainTextResponse(text, status_code=500 if failed else 200)


def router(*, read: object, act: object) -> APIRouter:
    """The page, its fragments and its buttons."""
    ui = APIRouter(dependencies=[Depends(read)])  # type: ignore[arg-type]
    acts = [Depends(act)]  # type: ignore[arg-type]
    history = History()

    @ui.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(svc: Svc) -> str:
        view = svc.view()
        history.add(view)
        recent = events.query(svc.ctx.store, fleet=svc.fleet, limit=50)
        return _env.get_template("page.html").render(
            fleet=svc.fleet,
            static="/static",
            summary=_summary(view),
            events=[_event_row(e) for e in reversed(recent)],
        )

    @ui.get("/ui/summary", response_class=PlainTextResponse, include_in_schema=False)
    def summary(svc: Svc) -> str:
        return _summary(svc.view())

    @ui.get("/ui/fleet", response_class=HTMLResponse, include_in_schema=False)
    def fleet(svc: Svc) -> str:
        view = svc.view()
        history.add(view)
        rows = [_vm_row(v, history) for v in view.vms]
        return _env.get_template("fleet.html").render(vms=rows)

    @ui.get("/ui/hosts", response_class=HTMLResponse, include_in_schema=False)
    def hosts(svc: Svc) -> str:
        rows = [_host_row(h) for h in svc.view().hosts]
        return _env.get_template("hosts.html").render(hosts=rows)

    @ui.get("/ui/groups", response_class=HTMLResponse, include_in_schema=False)
    def groups(svc: Svc) -> str:
        return _env.get_template("groups.html").render(groups=_group_rows(svc, svc.view()))

    @ui.get("/ui/events/stream", include_in_schema=False)
    def stream(svc: Svc) -> StreamingResponse:
        row = _env.get_template("event_row.html")
        return sse(svc, after=None, render=lambda e: row.render(e=_event_row(e)))

    @ui.post("/ui/groups/{name}/power/{verb}", dependencies=acts, include_in_schema=False)
    def power_group(name: str, verb: str, svc: Svc) -> PlainTextResponse:
        return _said(svc.power_group(name, verb))

    @ui.post("/ui/vms/{name}/{verb}", dependencies=acts, include_in_schema=False)
    def power_vm(name: str, verb: str, svc: Svc) -> PlainTextResponse:
        return _said(svc.power_vm(name, verb))

    @ui.post("/ui/groups/{name}/snapshot", dependencies=acts, include_in_schema=False)
    def snapshot(
        name: str, svc: Svc, prompt: Annotated[str | None, Header(alias="HX-Prompt")] = None
    ) -> PlainTextResponse:
        if not prompt:
            raise UsageError("name the snapshot")
        results, _window = svc.snapshot(prompt, group=name)
        return _said(results)

    return ui
