"""Group power: walking boot tiers on the hosts, power-off in reverse, suspend and resume.

PoweredOn walks the group's tiers (core.groups.walk): a tier's VMs start together, its nested
groups walk their own tiers at the same time; the next tier starts once this tier's gate
holds for every member (and its nested walks finished) and at least `delay` seconds have
passed since the tier's VMs were started. A gate that fails stops the walk: members not yet
started stay as they are, and GroupPowerError names the members that failed.
PoweredOff stops tier by tier in reverse (graceful shutdown, forced after the group's
`shutdown_timeout`); Suspended pauses every member at once; resume lets them all run again.

Every change is written to the state store's events: `group-power` records (the group's
wanted state: pending, done or failed; `status` reads them) and one `power` event per VM
transition, with its time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from vmfleet.core import groups as core
from vmfleet.core.expand import Instance
from vmfleet.engine import provision
from vmfleet.engine.apply import Observation, observe
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, GuestError, OperationTimeout, UsageError
from vmfleet.spec.models import Ready
from vmfleet.state import durations

Progress = Callable[[str, str, str], None]
RECORD_KIND = "group-power"
EVENT_KIND = "power"


def _quiet(_vm: str, _phase: str, _detail: str) -> None:
    return None


@dataclass
class MemberOutcome:
    """What a power operation did to one VM, with wall-clock times (epoch seconds)."""

    vm: str
    group: str
    action: str
    ok: bool
    detail: str = ""
    tier: int | None = None
    started_at: float | None = None
    ready_at: float | None = None


class GroupPowerError(FleetError):
    """A power walk stopped: a gate did not hold, or a member could not change state."""

    def __init__(self, message: str, *, outcomes: Sequence[MemberOutcome] = ()) -> None:
        super().__init__(message)
        self.outcomes = list(outcomes)


@dataclass
class _Run:
    ctx: FleetContext
    have: dict[str, tuple[str, str]]  # vm → (host, state)
    instances: dict[str, Instance]
    progress: Progress
    only: Collection[str] | None
    outcomes: list[MemberOutcome] = field(default_factory=list)


# --- records ------------------------------------------------------------------------------------


def _key(group: str) -> str:
    return f"group/{group}"


def records(ctx: FleetContext) -> dict[str, core.PowerRecord]:
    """The last power record of every group of the fleet."""
    out: dict[str, core.PowerRecord] = {}
    for name in ctx.loaded.spec.groups:
        for at, _vm, kind, message in ctx.store.events(vm=_key(name), limit=20):
            if kind != RECORD_KIND:
                continue
            data = json.loads(message)
            out[name] = core.PowerRecord(
                str(data["state"]), str(data["status"]), at, str(data.get("detail", ""))
            )
            break
    return out


def _record(
    ctx: FleetContext, names: Sequence[str], state: str, status: str, detail: str = ""
) -> None:
    message = json.dumps({"state": state, "status": status, "detail": detail})
    for name in names:
        ctx.store.event(kind=RECORD_KIND, vm=_key(name), message=message)


def _event(ctx: FleetContext, vm: str, message: str) -> None:
    ctx.store.event(kind=EVENT_KIND, vm=vm, message=message)


def transitions(ctx: FleetContext, vm: str) -> list[tuple[float, str]]:
    """A VM's recorded power transitions, oldest first: (epoch seconds, message)."""
    rows = ctx.store.events(vm=vm, limit=1000)
    return [(at, message) for at, _vm, kind, message in reversed(rows) if kind == EVENT_KIND]


# --- the public verbs -----------------------------------------------------------------------------


def power(
    ctx: FleetContext,
    group: str,
    state: str,
    *,
    progress: Progress = _quiet,
    only: Collection[str] | None = None,
    observation: Observation | None = None,
) -> list[MemberOutcome]:
    """Bring a group (and its nested groups) to `state`: PoweredOn, PoweredOff, Suspended,
    or "Resumed" (paused members run again; recorded as PoweredOn).

    `only` limits the change to those VMs (new members, from `up`). Raises GroupPowerError
    when a gate fails or a member cannot change; the group is then recorded as failed.
    """
    spec = ctx.loaded.spec
    if group not in spec.groups:
        raise UsageError(f"no group {group!r} in fleet {ctx.fleet}")
    instances = ctx.instances()
    w = core.walk(spec, instances, group)
    observation = observation or observe(ctx)
    run = _Run(
        ctx,
        {o.name: (o.host, o.state) for o in observation.vms},
        {i.name: i for i in instances},
        progress,
        only,
    )
    missing = [vm for vm in w.all_vms() if vm not in run.have and (only is None or vm in only)]
    if missing:
        raise UsageError(f"group {group}: {', '.join(missing)} not created yet (vmfleet up)")
    recorded = core.POWERED_ON if state == "Resumed" else state
    names = w.all_groups()
    _record(ctx, names, recorded, "pending")
    try:
        if state == core.POWERED_ON:
            _walk_on(run, w)
        elif state == core.POWERED_OFF:
            _power_off(run, w)
        elif state == core.SUSPENDED:
            _all_at_once(run, w, _suspend_one)
        elif state == "Resumed":
            _all_at_once(run, w, _resume_one)
        else:
            raise UsageError(f"unknown power state {state!r}")
    except GroupPowerError as error:
        _record(ctx, names, recorded, "failed", str(error))
        error.outcomes = run.outcomes
        raise
    except BaseException as error:
        _record(ctx, names, recorded, "failed", str(error))
        raise
    _record(ctx, names, recorded, "done")
    return run.outcomes


def held(ctx: FleetContext) -> set[str]:
    """VMs whose power a group's `power_state` decides: `up` defines them without starting
    them and never restarts them behind the group's back."""
    spec = ctx.loaded.spec
    instances = ctx.instances()
    return {vm for g in core.governing(spec) for vm in core.vms_of(spec, instances, g)}


def apply_spec(
    ctx: FleetContext,
    *,
    created: Collection[str],
    progress: Progress = _quiet,
    only: Collection[str] | None = None,
) -> list[MemberOutcome]:
    """After `up`: bring each governing group to its spec `power_state` when that differs
    from the state vmfleet last applied (or the last change did not finish), else power on
    only the members `up` just created. Drifted members are not corrected here. With `only`
    (`up FILE TARGET...`) just the members `up` created among those are powered on."""
    spec = ctx.loaded.spec
    instances = ctx.instances()
    done = records(ctx)
    outcomes: list[MemberOutcome] = []
    observation = observe(ctx)
    for name in core.governing(spec):
        wanted = spec.groups[name].power_state
        assert wanted is not None
        last = done.get(name)
        if only is None and (last is None or last.state != wanted or last.status != "done"):
            outcomes += power(ctx, name, wanted, progress=progress, observation=observation)
            observation = observe(ctx)
            continue
        new = [vm for vm in core.vms_of(spec, instances, name) if vm in created]
        if new and wanted != core.POWERED_OFF:
            outcomes += power(
                ctx, name, core.POWERED_ON, progress=progress, only=new, observation=observation
            )
            if wanted == core.SUSPENDED:
                outcomes += power(ctx, name, core.SUSPENDED, progress=progress, only=new)
            observation = observe(ctx)
    return outcomes


# --- power on -------------------------------------------------------------------------------------


def _walk_on(run: _Run, w: core.Walk) -> None:
    for number, tier in enumerate(w.tiers, start=1):
        vms = [vm for vm in tier.vms if run.only is None or vm in run.only]
        nested = [n for n in tier.groups if run.only is None or set(n.all_vms()) & set(run.only)]
        if not vms and not nested:
            continue
        with ThreadPoolExecutor(max_workers=max(1, len(vms) + len(nested))) as pool:
            starts = [pool.submit(_start_one, run, vm, w.group, number) for vm in vms]
            walks = [pool.submit(_walk_on, run, n) for n in nested]
            started = [f.result() for f in starts]
            began = time.monotonic()  # the delay counts once the tier's VMs are started
            gates = [pool.submit(_gate, run, o, tier.gate) for o in started]
            failed = [o for o in (f.result() for f in gates) if not o.ok]
            nested_errors = []
            for f in walks:
                try:
                    f.result()
                except GroupPowerError as error:
                    nested_errors.append(str(error))
        if failed or nested_errors:
            parts = [f"{o.vm}: {o.detail}" for o in failed] + nested_errors
            raise GroupPowerError(
                f"group {w.group}: tier {number} did not become ready ({'; '.join(parts)}); "
                "later tiers were not started"
            )
        if number < len(w.tiers):
            remaining = tier.delay - (time.monotonic() - began)
            if remaining > 0:
                time.sleep(remaining)


def _start_one(run: _Run, vm: str, group: str, tier: int) -> MemberOutcome:
    host_name, state = run.have[vm]
    host = run.ctx.host(host_name)
    outcome = MemberOutcome(vm, group, "start", True, tier=tier)
    try:
        if state in ("paused", "pmsuspended"):
            host.resume(vm)
            outcome.detail = "resumed"
        elif core.power_of(state) == core.POWERED_ON:
            outcome.detail = "already running"
        else:
            run.progress(vm, "start", f"{group} tier {tier}")
            host.start(vm)
            outcome.detail = "started"
    except FleetError as error:
        outcome.ok, outcome.detail = False, str(error)
        run.progress(vm, "failed", str(error))
    outcome.started_at = time.time()
    if outcome.ok and outcome.detail != "already running":
        _event(run.ctx, vm, f"{outcome.detail} ({group} tier {tier})")
    run.outcomes.append(outcome)
    return outcome


def _gate(run: _Run, outcome: MemberOutcome, gate: core.Gate) -> MemberOutcome:
    """Wait until the gate holds for one started member; marks the outcome failed if not."""
    if not outcome.ok:
        return outcome
    vm = outcome.vm
    host_name = run.have[vm][0]
    run.progress(vm, "ready", gate.wait_for)
    try:
        if gate.wait_for == "command":
            _wait_command(run, vm, host_name, gate)
        elif gate.wait_for != "none":
            instance = run.instances[vm]
            ready = Ready(wait_for=gate.wait_for, timeout=gate.timeout, command=gate.command)
            _check_forward(instance, gate)
            gated = replace(instance, fields=replace(instance.fields, ready=ready))
            reach = provision.access(run.ctx, instance, host_name)
            provision.wait_ready(run.ctx, gated, host_name, reach)
    except FleetError as error:
        outcome.ok, outcome.detail = False, str(error)
        run.progress(vm, "failed", str(error))
        return outcome
    outcome.ready_at = time.time()
    if outcome.started_at is not None and outcome.detail in ("started", "resumed"):
        durations.record(run.ctx.store, "ready", outcome.ready_at - outcome.started_at, subject=vm)
    _event(run.ctx, vm, f"ready ({gate.wait_for})")
    run.progress(vm, "done", f"{outcome.detail}, {gate.wait_for}")
    return outcome


def _check_forward(instance: Instance, gate: core.Gate) -> None:
    """A user-mode VM forwards only SSH and the port its own `ready` names."""
    if not gate.wait_for.startswith("port:") or gate.wait_for == "port:22":
        return
    if (
        instance.nics
        and instance.nics[0].mode == "user"
        and instance.fields.ready.wait_for != gate.wait_for
    ):
        raise GuestError(
            f"gate {gate.wait_for}: a user-mode VM forwards that port only when its own "
            f"`ready` is {gate.wait_for}",
            vm=instance.name,
        )


def _wait_command(run: _Run, vm: str, host_name: str, gate: core.Gate) -> None:
    """Run the gate's command here until it exits 0 (VMFLEET_VM, VMFLEET_SSH_HOST and
    VMFLEET_SSH_PORT tell it which member it checks)."""
    if not gate.command:
        raise GuestError("gate `command` needs a `command`", vm=vm)
    reach = provision.access(run.ctx, run.instances[vm], host_name)
    env = {
        "VMFLEET_VM": vm,
        "VMFLEET_SSH_HOST": reach.address or "",
        "VMFLEET_SSH_PORT": str(reach.port),
    }
    deadline = time.monotonic() + gate.timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            done = run.ctx.runner.run(
                ["sh", "-c", gate.command], env=env, timeout=left, check=False
            )
        except OperationTimeout:
            break
        if done.ok:
            return
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    raise GuestError(f"gate command did not succeed within {gate.timeout:.0f}s", vm=vm)


# --- power off, suspend, resume -------------------------------------------------------------


def _power_off(run: _Run, w: core.Walk) -> None:
    for step in core.shutdown_steps(w):
        members = [(vm, t) for vm, t in step if run.only is None or vm in run.only]
        if not members:
            continue
        with ThreadPoolExecutor(max_workers=len(members)) as pool:
            results = list(pool.map(lambda m: _stop_one(run, w.group, *m), members))
        failed = [o for o in results if not o.ok]
        if failed:
            raise GroupPowerError(
                f"group {w.group}: could not power off "
                + "; ".join(f"{o.vm}: {o.detail}" for o in failed)
                + "; earlier tiers were left running"
            )


def _stop_one(run: _Run, group: str, vm: str, timeout: float) -> MemberOutcome:
    host_name, state = run.have[vm]
    host = run.ctx.host(host_name)
    outcome = MemberOutcome(vm, group, "stop", True, started_at=time.time())
    try:
        if core.power_of(state) == core.POWERED_OFF:
            outcome.detail = "already off"
        else:
            run.progress(vm, "stop", f"graceful, {timeout:.0f}s")
            if state in ("paused", "pmsuspended"):
                host.resume(vm)  # a paused guest cannot answer the ACPI request
            result = host.shutdown(vm, timeout=timeout)
            outcome.detail = f"stopped ({result})"
            outcome.ready_at = time.time()
            _event(run.ctx, vm, outcome.detail)
            run.progress(vm, "done", outcome.detail)
    except FleetError as error:
        outcome.ok, outcome.detail = False, str(error)
        run.progress(vm, "failed", str(error))
    run.outcomes.append(outcome)
    return outcome


def _all_at_once(run: _Run, w: core.Walk, one: Callable[[_Run, str, str], MemberOutcome]) -> None:
    vms = [vm for vm in w.all_vms() if run.only is None or vm in run.only]
    if not vms:
        return
    with ThreadPoolExecutor(max_workers=len(vms)) as pool:
        results = list(pool.map(lambda vm: one(run, w.group, vm), vms))
    failed = [o for o in results if not o.ok]
    if failed:
        raise GroupPowerError(
            f"group {w.group}: " + "; ".join(f"{o.vm}: {o.detail}" for o in failed)
        )


def _pause_or_resume(run: _Run, group: str, vm: str, *, verb: str) -> MemberOutcome:
    """Suspend a running member, or resume a paused one; others are left as they are."""
    host_name, state = run.have[vm]
    outcome = MemberOutcome(vm, group, verb, True, started_at=time.time())
    suspend = verb == "suspend"
    acts_on = ("running",) if suspend else ("paused", "pmsuspended")
    try:
        if state in acts_on:
            host = run.ctx.host(host_name)
            (host.suspend if suspend else host.resume)(vm)
            outcome.detail = "suspended" if suspend else "resumed"
            _event(run.ctx, vm, outcome.detail)
        else:
            only = "running VMs are suspended" if suspend else "suspended VMs are resumed"
            outcome.detail = f"left {state} (only {only})"
    except FleetError as error:
        outcome.ok, outcome.detail = False, str(error)
    run.progress(vm, "done" if outcome.ok else "failed", outcome.detail)
    run.outcomes.append(outcome)
    return outcome


def _suspend_one(run: _Run, group: str, vm: str) -> MemberOutcome:
    return _pause_or_resume(run, group, vm, verb="suspend")


def _resume_one(run: _Run, group: str, vm: str) -> MemberOutcome:
    return _pause_or_resume(run, group, vm, verb="resume")


def group_status(ctx: FleetContext) -> list[core.GroupStatus]:
    """Every group's conditions from what the hosts report now and the recorded changes."""
    observation = observe(ctx)
    placed = {o.name: core.Placed(o.host, o.state) for o in observation.vms}
    return core.status(ctx.loaded.spec, ctx.instances(), placed, records(ctx))
