"""Observe the hosts, plan, and apply the plan with parallel workers.

Every public function here is what one CLI command calls; progress goes out through a
callback `(vm, phase, detail)`, so the CLI can draw a row per VM and tests can record it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial

from vmfleet.core.expand import Instance
from vmfleet.core.plan import Action, Observed, Plan, diff
from vmfleet.drivers.metadata import volume_name
from vmfleet.engine import hosts, provision
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, HostUnreachableError

Progress = Callable[[str, str, str], None]


def _quiet(_vm: str, _phase: str, _detail: str) -> None:
    return None


@dataclass
class Observation:
    """What the hosts report for this fleet, and which hosts could not be asked."""

    vms: list[Observed] = field(default_factory=list)
    unreachable: dict[str, HostUnreachableError] = field(default_factory=dict)
    details: dict[str, dict[str, object]] = field(default_factory=dict)


def observe(ctx: FleetContext) -> Observation:
    """This fleet's domains on every host (owned ones only); unreachable hosts are noted."""
    seen = Observation()

    def one(host_name: str) -> tuple[str, list[Observed], dict[str, dict[str, object]]]:
        host = ctx.host(host_name)
        pool = ctx.host_specs()[host_name].pool
        volumes = {v.name: v for v in host.list_volumes(pool)}
        out: list[Observed] = []
        details: dict[str, dict[str, object]] = {}
        for info in host.list_domains(fleet=ctx.fleet):
            assert info.owner is not None
            root = volumes.get(volume_name(fleet=ctx.fleet, vm=info.name, role="root"))
            out.append(
                Observed(
                    name=info.name,
                    host=host_name,
                    spec_hash=info.owner.spec_hash,
                    state=str(info.state),
                    vcpus=info.vcpus,
                    memory_bytes=info.max_memory_bytes,
                    disk_bytes=root.capacity if root else None,
                )
            )
            details[info.name] = {
                "template": info.owner.template,
                "index": info.owner.index,
                "uptime": info.uptime_seconds,
            }
        return host_name, out, details

    with ThreadPoolExecutor(max_workers=max(1, len(ctx.host_specs()))) as pool:
        futures = {pool.submit(one, name): name for name in ctx.host_specs()}
        for future in as_completed(futures):
            try:
                _name, vms, details = future.result()
            except HostUnreachableError as error:
                seen.unreachable[futures[future]] = error
                continue
            seen.vms += vms
            seen.details.update(details)
    seen.vms.sort(key=lambda o: o.name)
    return seen


def make_plan(ctx: FleetContext, observation: Observation | None = None) -> Plan:
    """The actions `up` would take. New VMs are placed all together (running ones never
    move); PlacementError, before anything changes, when some cannot be placed."""
    observation = observation or observe(ctx)
    observed = {o.name: o.host for o in observation.vms}
    placed = hosts.placement(ctx, observed)
    hosts.require_placed(placed)
    wanted = [(i, placed.hosts.get(i.name, observed.get(i.name, ""))) for i in ctx.instances()]
    plan = diff(wanted, observation.vms)
    for action in plan.of("create"):
        if action.host in observation.unreachable:
            raise observation.unreachable[action.host]
    return plan


@dataclass
class Outcome:
    vm: str
    action: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0
    ready_seconds: float | None = None


def up(
    ctx: FleetContext,
    plan: Plan,
    *,
    progress: Progress = _quiet,
    workers: int = 8,
    prune: bool = False,
    restart: bool = False,
    hold: Collection[str] = frozenset(),
) -> list[Outcome]:
    """Apply a plan: create, change, start, and (with prune) remove; ready checks last.

    VMs in `hold` belong to a group that decides their power (engine.groups): they are
    created and changed but never started here, as are standby VMs (`power: off`).
    """
    jobs: list[tuple[Action, Callable[[], Outcome]]] = []
    for action in plan.actions:
        standby = action.instance is not None and action.instance.fields.power == "off"
        held = action.vm in hold or standby
        if action.kind == "create":
            jobs.append((action, partial(_create, ctx, action, progress, not held)))
        elif action.kind == "change":
            jobs.append((action, partial(_change, ctx, action, progress, restart, not held)))
        elif (
            action.kind == "unchanged"
            and not held
            and action.observed
            and action.observed.state == "shutoff"
        ):
            jobs.append((action, partial(_start, ctx, action, progress)))
        elif action.kind == "orphan" and prune:
            jobs.append((action, partial(_remove, ctx, action.host, action.vm, progress)))
    return _run(jobs, workers=workers, progress=progress)


def _run(
    jobs: Sequence[tuple[Action, Callable[[], Outcome]]], *, workers: int, progress: Progress
) -> list[Outcome]:
    results: list[Outcome] = []
    if not jobs:
        return results
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        futures = {pool.submit(job): action for action, job in jobs}
        for future in as_completed(futures):
            action = futures[future]
            try:
                results.append(future.result())
            except FleetError as error:
                progress(action.vm, "failed", str(error))
                results.append(Outcome(action.vm, action.kind, False, str(error)))
    order = {a.vm: n for n, (a, _j) in enumerate(jobs)}
    results.sort(key=lambda r: order.get(r.vm, 0))
    return results


def _create(ctx: FleetContext, action: Action, progress: Progress, start: bool) -> Outcome:
    assert action.instance is not None
    started = time.monotonic()
    reach = provision.create(ctx, action.instance, action.host, progress, start=start)
    if not start:
        standby = action.instance.fields.power == "off"
        why = "standby (power: off)" if standby else "its group starts it"
        progress(action.vm, "done", f"defined; {why}")
        return Outcome(action.vm, action.kind, True, "defined", time.monotonic() - started)
    return _ready(ctx, action, action.instance, reach, started, progress, "created")


def _ready(
    ctx: FleetContext,
    action: Action,
    instance: Instance,
    reach: provision.Access,
    started: float,
    progress: Progress,
    what: str,
) -> Outcome:
    if instance.fields.ready.wait_for not in ("none",):
        progress(instance.name, "ready", instance.fields.ready.wait_for)
        waited = provision.wait_ready(ctx, instance, action.host, reach)
    else:
        waited = None
    progress(instance.name, "done", what)
    return Outcome(instance.name, action.kind, True, what, time.monotonic() - started, waited)


def _start(ctx: FleetContext, action: Action, progress: Progress) -> Outcome:
    assert action.instance is not None
    started = time.monotonic()
    progress(action.vm, "start", "")
    ctx.host(action.host).start(action.vm)
    reach = provision.access(ctx, action.instance, action.host)
    return _ready(ctx, action, action.instance, reach, started, progress, "started")


def _change(
    ctx: FleetContext, action: Action, progress: Progress, restart: bool, start: bool = True
) -> Outcome:
    """Redefine the domain with the new spec; grow the disk; restart only when allowed."""
    assert action.instance is not None and action.observed is not None
    started = time.monotonic()
    host = ctx.host(action.host)
    running = action.observed.state in ("running", "paused")
    if running and action.needs_restart and restart:
        progress(action.vm, "stop", "")
        host.shutdown(action.vm, timeout=60.0)
        running = False
    pool = ctx.host_specs()[action.host].pool
    root = volume_name(fleet=ctx.fleet, vm=action.vm, role="root")
    for change in action.changes:
        if change.field == "disk" and not running:
            progress(action.vm, "disk", "grow")
            host.resize_volume(pool, root, int(change.new))  # type: ignore[call-overload]
    progress(action.vm, "define", "")
    disks = provision.with_overlays(
        host, action.vm, provision.existing_disks(ctx, action.instance, action.host)
    )
    config = provision.domain_config(ctx, action.instance, host, action.host, disks)
    host.define(config.to_xml())
    if not running and start:
        progress(action.vm, "start", "")
        host.start(action.vm)
        reach = provision.access(ctx, action.instance, action.host)
        return _ready(ctx, action, action.instance, reach, started, progress, "changed")
    staged = action.needs_restart or any(c.field == "disk" for c in action.changes)
    what = "changed; takes effect at next boot" if staged else "changed"
    progress(action.vm, "done", what)
    return Outcome(action.vm, action.kind, True, what, time.monotonic() - started)


def _remove(ctx: FleetContext, host: str, vm: str, progress: Progress) -> Outcome:
    started = time.monotonic()
    provision.remove(ctx, host, vm, progress)
    progress(vm, "done", "removed")
    return Outcome(vm, "remove", True, "removed", time.monotonic() - started)


def down(
    ctx: FleetContext,
    vms: Sequence[str] | None = None,
    *,
    progress: Progress = _quiet,
    workers: int = 8,
) -> list[Outcome]:
    """Remove the fleet's VMs (all, or those named) from every host that has them."""
    observation = observe(ctx)
    if observation.unreachable and vms is None:
        names = ", ".join(sorted(observation.unreachable))
        raise HostUnreachableError(f"cannot reach {names}; nothing removed there")
    targets = [o for o in observation.vms if vms is None or o.name in vms]
    jobs = [
        (
            Action("orphan", o.name, o.host, observed=o),
            partial(_remove, ctx, o.host, o.name, progress),
        )
        for o in targets
    ]
    results = _run(jobs, workers=workers, progress=progress)
    for host_name in ctx.host_specs():
        if host_name in observation.unreachable:
            continue
        host = ctx.host(host_name)
        provision.sweep_volumes(ctx, host, host_name, vms)
        for vm in vms or [i.name for i in ctx.instances()]:
            ctx.store.release(vm=vm)
        if not host.list_domains(fleet=ctx.fleet):
            provision.remove_networks(ctx, host)
    return results
