"""Observe the hosts, plan, and apply the plan with parallel workers.

Every public function here is what one CLI command calls; progress goes out through a
callback `(vm, phase, detail)`, so the CLI can draw a row per VM and tests can record it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from vmfleet.core.plan import (
    Action,
    Facts,
    HostObserved,
    NetworkFacts,
    Observed,
    Plan,
    Step,
    diff,
)
from vmfleet.drivers import names
from vmfleet.drivers.domainxml import VolumeSource, parse_domain
from vmfleet.engine import hosts, images, provision, steps
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, HostUnreachableError
from vmfleet.spec.resolve import networks
from vmfleet.state import durations

if TYPE_CHECKING:
    from vmfleet.core.expand import Instance
    from vmfleet.drivers.libvirt import DomainInfo, VolumeInfo

Progress = Callable[[str, str, str], None]


def _quiet(_vm: str, _phase: str, _detail: str) -> None:
    return None


@dataclass
class Observation:
    """What the hosts report for this fleet, and which hosts could not be asked."""

    vms: list[Observed] = field(default_factory=list)
    unreachable: dict[str, HostUnreachableError] = field(default_factory=dict)
    details: dict[str, dict[str, object]] = field(default_factory=dict)
    hosts: dict[str, HostObserved] = field(default_factory=dict)


def observe(ctx: FleetContext) -> Observation:
    """This fleet's domains on every host (owned ones only); unreachable hosts are noted."""
    seen = Observation()

    def one(host_name: str) -> tuple[list[Observed], dict[str, dict[str, object]], HostObserved]:
        host = ctx.host(host_name)
        pool = ctx.host_specs()[host_name].pool
        volumes = {v.name: v for v in host.list_volumes(pool)}
        out: list[Observed] = []
        details: dict[str, dict[str, object]] = {}
        for info in host.list_domains(fleet=ctx.fleet):
            assert info.owner is not None
            out.append(_observed(ctx, host_name, info, volumes))
            details[info.name] = {
                "template": info.owner.template,
                "index": info.owner.index,
                "uptime": info.uptime_seconds,
            }
        return out, details, _host_observed(ctx, host_name, set(volumes))

    with ThreadPoolExecutor(max_workers=max(1, len(ctx.host_specs()))) as pool:
        futures = {pool.submit(one, name): name for name in ctx.host_specs()}
        for future in as_completed(futures):
            try:
                vms, details, have = future.result()
            except HostUnreachableError as error:
                seen.unreachable[futures[future]] = error
                continue
            seen.vms += vms
            seen.details.update(details)
            seen.hosts[have.name] = have
    seen.vms.sort(key=lambda o: o.name)
    return seen


def _observed(
    ctx: FleetContext, host_name: str, info: DomainInfo, volumes: dict[str, VolumeInfo]
) -> Observed:
    """One domain as the plan sees it: both hashes, sizes, its disks' capacities."""
    assert info.owner is not None
    defined = info.config_owner or info.owner
    root = volumes.get(names.volume(fleet=ctx.fleet, vm=info.name, role="root"))
    data: list[int] = []
    while vol := volumes.get(names.volume(fleet=ctx.fleet, vm=info.name, role=f"data-{len(data)}")):
        data.append(vol.capacity)
    attached = sum(
        1
        for disk in parse_domain(info.xml).disks
        if isinstance(disk.source, VolumeSource) and _is_data_disk(disk.source.volume)
    )
    return Observed(
        name=info.name,
        host=host_name,
        spec_hash=info.owner.spec_hash,
        config_hash=defined.spec_hash,
        runtime_hash=info.owner.runtime_hash or None,
        state=str(info.state),
        vcpus=info.vcpus,
        memory_bytes=info.memory_bytes,
        max_memory_bytes=info.max_memory_bytes,
        disk_bytes=root.capacity if root else None,
        data_disks=tuple(data),
        attached_data_disks=attached,
    )


def _is_data_disk(volume: str) -> bool:
    """A VM data disk's volume (`vmf-<fleet>.<vm>.data-N`, or the old `--data-N` names)."""
    parsed = names.parse_volume(volume)
    return parsed[2].startswith("data-") if parsed else "--data-" in volume


def _host_observed(ctx: FleetContext, host_name: str, volumes: set[str]) -> HostObserved:
    """The fleet's networks present on a host and the images with a base volume there."""
    host = ctx.host(host_name)
    managed = [
        n for n, spec in networks(ctx.loaded.spec).items() if spec.mode in ("nat", "isolated")
    ]
    present = {n for n in managed if host.get_network(provision.network_name(ctx.fleet, n))}
    of_image = {v: names.base_image_of(v) for v in volumes}
    bases = {v for v, image in of_image.items() if image is not None}
    based = {image for image in of_image.values() if image in ctx.loaded.spec.images}
    return HostObserved(host_name, frozenset(present), frozenset(based), frozenset(bases))


def make_plan(
    ctx: FleetContext,
    observation: Observation | None = None,
    *,
    probe: bool = False,
    prune: bool = False,
    restart: bool = False,
    hold: Collection[str] = frozenset(),
) -> Plan:
    """The steps `up` would take (see `core.plan.diff` for prune, restart and hold). New
    VMs are placed all together (running ones never move); PlacementError, before anything
    changes, when some cannot be placed. `probe` (only `up`) boots the KVM probe where its
    answer is not cached; without it an unknown answer is planned as its likely one."""
    observation = observation or observe(ctx)
    observed = {o.name: o.host for o in observation.vms}
    _settle_images(ctx, observation, new=[i for i in ctx.instances() if i.name not in observed])
    placed = hosts.placement(ctx, observed, probe=probe)
    hosts.require_placed(placed)
    wanted = [(i, placed.hosts.get(i.name, observed.get(i.name, ""))) for i in ctx.instances()]
    plan = diff(
        wanted, observation.vms, hosts=observation.hosts, prune=prune, restart=restart, hold=hold
    )
    for action in plan.of("create"):
        if action.host in observation.unreachable:
            raise observation.unreachable[action.host]
    return replace(plan, facts=_facts(ctx, plan))


def _settle_images(ctx: FleetContext, observation: Observation, *, new: list[Instance]) -> None:
    """An image new VMs need counts as on a host only when a base there holds its file as
    it is now: `up` uploads a changed file again (a base is named by its digest), so the
    plan must say so. Settled in the observation, so a replan with it sees the same. Only
    images some host has a base of are hashed (a cached digest after any `up`)."""
    needed = {i.fields.image for i in new if i.fields.image}
    wanted: dict[str, str | None] = {}
    for name, have in observation.hosts.items():
        for image in sorted(have.images & needed):
            if image not in wanted:
                wanted[image] = provision.base_name(ctx, image)
        stale = {i for i in have.images & needed if wanted[i] not in (None, *have.bases)}
        if stale:
            observation.hosts[name] = replace(have, images=have.images - stale)


def _facts(ctx: FleetContext, plan: Plan) -> Facts:
    """Mode and CIDR of the networks the plan's host steps name, size and format of the
    images they upload (read from the local files, which nothing changes)."""
    spec_nets = networks(ctx.loaded.spec)
    nets = {s.target for s in plan.host_steps if s.kind.startswith("network-")}
    uploads = sorted({s.target for s in plan.host_steps if s.kind == "image-upload"})
    return Facts(
        networks={
            n: NetworkFacts(spec_nets[n].mode, str(spec_nets[n].cidr or "") or None)
            for n in sorted(nets)
            if n in spec_nets
        },
        images=images.facts(ctx, uploads),
    )


@dataclass
class Outcome:
    vm: str
    action: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0
    ready_seconds: float | None = None


def up(
    ctx: FleetContext, plan: Plan, *, progress: Progress = _quiet, workers: int = 8
) -> list[Outcome]:
    """Carry out exactly the plan's steps: hosts' setup, removals, then each VM's steps (in
    parallel, `workers` VMs at a time per host, readiness awaited outside those slots), then
    hosts' teardown. A failed host setup step fails its host's VMs."""
    ctx.base_memo = {}  # each base volume is checked once per run, not once per VM
    try:
        return _up(ctx, plan, progress=progress, workers=workers)
    finally:
        ctx.base_memo = None


def _up(ctx: FleetContext, plan: Plan, *, progress: Progress, workers: int) -> list[Outcome]:
    setup = [s for s in plan.host_steps if s.kind != "network-remove"]
    failed_hosts: dict[str, str] = {}
    for step in setup:
        if step.host in failed_hosts:
            continue
        progress(step.host, step.kind, step.target)
        try:
            steps.run_host_step(ctx, step)
        except FleetError as error:
            failed_hosts[step.host] = f"{step.kind} {step.target}: {error}"
    removals: list[Action] = []
    jobs: list[Action] = []
    outcomes: list[Outcome] = []
    for action in plan.actions:
        if not action.steps:
            continue
        if action.host in failed_hosts:
            outcomes.append(Outcome(action.vm, action.kind, False, failed_hosts[action.host]))
            continue
        (removals if action.kind == "orphan" else jobs).append(action)
    # Removals first: they free room, leases (IPs, ports) and names for the new VMs.
    outcomes += _pipeline(ctx, removals, workers=workers, progress=progress)
    outcomes += _pipeline(ctx, jobs, workers=workers, progress=progress)
    # A running VM counts as unchanged even when an interrupted run started it and never saw
    # it ready: `up` answers for every VM, whoever started it, so it waits for readiness of
    # those too (quick for a VM that is ready). Issue 10 item 9.
    running = [
        a
        for a in plan.actions
        if not a.steps
        and a.kind == "unchanged"
        and a.observed is not None
        and a.observed.state == "running"
        and a.host not in failed_hosts
        and steps.needs_wait(a)
    ]
    outcomes += _confirm_ready(ctx, running, progress=progress)
    for step in plan.host_steps:
        if step.kind == "network-remove":
            steps.run_host_step(ctx, step)
    return outcomes


def _pipeline(
    ctx: FleetContext, actions: Sequence[Action], *, workers: int, progress: Progress
) -> list[Outcome]:
    """Run each VM's steps with at most `workers` VMs in preparation per host, and wait
    for readiness outside those slots: VM 9 is created while VM 1 boots. Outcomes come
    back in plan order; a VM's failure is its outcome, never the others'."""
    if not actions:
        return []
    limits = {host: threading.Semaphore(workers) for host in {a.host for a in actions}}
    began = {a.vm: time.monotonic() for a in actions}
    results: dict[str, Outcome] = {}

    def prepare(action: Action) -> tuple[str, bool]:
        with limits[action.host]:
            began[action.vm] = time.monotonic()
            return steps.run_vm_steps(ctx, action, progress)

    def fail(action: Action, error: FleetError) -> None:
        progress(action.vm, "failed", str(error))
        results[action.vm] = Outcome(action.vm, _kind(action), False, str(error))

    slots = max(1, min(len(actions), workers * len(limits)))
    with (
        ThreadPoolExecutor(max_workers=slots) as preparing,
        ThreadPoolExecutor(max_workers=len(actions)) as waiting,
    ):
        prepared = {preparing.submit(prepare, a): a for a in actions}
        awaited: dict[Future[float], tuple[Action, str]] = {}
        for future in as_completed(prepared):
            action = prepared[future]
            try:
                what, started = future.result()
            except FleetError as error:
                fail(action, error)
                continue
            if started and steps.needs_wait(action):
                awaited[waiting.submit(steps.await_ready, ctx, action, progress)] = (action, what)
            else:
                results[action.vm] = _done(action, what, began[action.vm], None, progress)
        for ready in as_completed(awaited):
            action, what = awaited[ready]
            try:
                waited = ready.result()
            except FleetError as error:
                fail(action, error)
                continue
            durations.record(ctx.store, "ready", waited, subject=action.vm)
            results[action.vm] = _done(action, what, began[action.vm], waited, progress)
    return [results[a.vm] for a in actions]


def _confirm_ready(
    ctx: FleetContext, actions: Sequence[Action], *, progress: Progress
) -> list[Outcome]:
    """Wait, all at once, until each running VM passes its readiness check."""
    if not actions:
        return []
    results: dict[str, Outcome] = {}
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(actions)) as waiting:
        awaited = {waiting.submit(steps.await_ready, ctx, a, progress): a for a in actions}
        for ready in as_completed(awaited):
            action = awaited[ready]
            try:
                waited = ready.result()
            except FleetError as error:
                progress(action.vm, "failed", str(error))
                results[action.vm] = Outcome(action.vm, "unchanged", False, str(error))
                continue
            results[action.vm] = _done(action, "unchanged; ready", began, waited, progress)
    return [results[a.vm] for a in actions]


def _kind(action: Action) -> str:
    return "remove" if action.kind == "orphan" else action.kind


def _done(
    action: Action, what: str, began: float, waited: float | None, progress: Progress
) -> Outcome:
    progress(action.vm, "done", what)
    return Outcome(action.vm, _kind(action), True, what, time.monotonic() - began, waited)


# At most this many domains are stopped at once, per `down`.
MAX_STOPS = 64


RETRY_PAUSE = 1.0  # seconds before a failed removal is tried again, once


def down(
    ctx: FleetContext,
    vms: Sequence[str] | None = None,
    *,
    progress: Progress = _quiet,
    workers: int = 8,
    graceful: float | None = None,
    observation: Observation | None = None,
) -> list[Outcome]:
    """Remove the fleet's VMs (all, or those named) from every host that has them.

    An unreachable host does not stop the others: what can be reached is removed, and each
    unreachable host gets a failed outcome naming it (nothing was removed there; the leases
    stay, so the next `down` finishes the job with the same names and ports).

    Every running VM is stopped first, all at once: pulled (destroyed), or with `graceful`
    asked to shut down and pulled after that many seconds. Then `workers` jobs undefine the
    VMs and delete their volumes; a removal that fails is tried once more after the others
    (its outcome is the second try's). `observation` spares a second look when the caller has
    one.
    """
    observation = observation or observe(ctx)
    targets = [o for o in observation.vms if vms is None or o.name in vms]
    _stop_all(ctx, targets, progress, graceful)
    removals = [
        Action("orphan", o.name, o.host, observed=o, steps=(Step("remove", o.host, o.name),))
        for o in targets
    ]
    results = _pipeline(ctx, removals, workers=workers, progress=progress)
    again = [a for a, r in zip(removals, results, strict=True) if not r.ok]
    if again:  # once more, after the others: libvirt can refuse while a domain's last job ends
        time.sleep(RETRY_PAUSE)
        retried = {r.vm: r for r in _pipeline(ctx, again, workers=workers, progress=progress)}
        results = [retried.get(r.vm, r) for r in results]
    known = {i.name for i in ctx.instances()} | {o.name for o in observation.vms}
    known |= {lease.vm for lease in ctx.store.leases()}
    for host_name in ctx.host_specs():
        if host_name in observation.unreachable:
            continue
        host = ctx.host(host_name)
        provision.sweep_volumes(ctx, host, host_name, vms or known)
        if not host.list_domains(fleet=ctx.fleet):
            provision.remove_networks(ctx, host)
    if not observation.unreachable:
        for vm in vms or [i.name for i in ctx.instances()]:
            ctx.store.release(vm=vm)
    for host_name, error in sorted(observation.unreachable.items()):
        detail = f"{error}; nothing removed there: run down again when it is back"
        progress(f"host {host_name}", "failed", detail)
        results.append(Outcome(f"host {host_name}", "remove", False, detail))
    return results


def _stop_all(
    ctx: FleetContext, targets: Sequence[Observed], progress: Progress, graceful: float | None
) -> None:
    """Stop every live target at once. A destroy mostly waits for QEMU to exit (1.5-3 s each
    under TCG): a slot per VM makes N of them cost about one, where `-j` slots cost N/-j.
    A VM that fails to stop is left to its removal job, which stops it again and reports."""
    live = [o for o in targets if o.state != "shutoff"]
    if not live:
        return

    def stop(o: Observed) -> None:
        progress(o.name, "stop", "graceful" if graceful is not None else "")
        host = ctx.host(o.host)
        try:
            if graceful is None:
                host.destroy(o.name)
            else:
                host.shutdown(o.name, timeout=graceful)
        except FleetError:
            return  # reported by the removal job's own attempt

    with ThreadPoolExecutor(max_workers=min(len(live), MAX_STOPS)) as pool:
        list(pool.map(stop, live))
