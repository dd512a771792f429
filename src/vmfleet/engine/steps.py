"""Executing a plan's steps: exactly the steps `core.plan` decided.

A VM's steps run in order in one worker; hosts' setup steps (networks, base images) run
before any VM's, network removals after all of them. A VM that was started is awaited
until ready, as its fleet file says, outside the workers (`engine.apply` pipelines them).
"""

from __future__ import annotations

from collections.abc import Callable

from vmfleet.core.plan import Action, Step
from vmfleet.drivers import names
from vmfleet.engine import provision
from vmfleet.engine.context import FleetContext
from vmfleet.engine.provision.definition import owner

Progress = Callable[[str, str, str], None]


def run_host_step(ctx: FleetContext, step: Step) -> None:
    """A host's step: create or remove a fleet network, upload a base image."""
    host = ctx.host(step.host)
    if step.kind == "network-create":
        provision.ensure_network(ctx, host, step.target)
    elif step.kind == "image-upload":
        provision.ensure_base(ctx, host, step.host, step.target)
    elif step.kind == "network-remove":
        provision.remove_networks(ctx, host)
    else:
        raise ValueError(f"not a host step: {step.kind}")


def run_vm_steps(ctx: FleetContext, action: Action, progress: Progress) -> tuple[str, bool]:
    """Run one VM's steps in order; returns what was done and whether the VM was started
    (then `await_ready` waits for it, in a thread that holds no worker slot)."""
    kinds = [s.kind for s in action.steps]
    started = False
    for step in action.steps:
        if step.kind == "create":
            assert action.instance is not None
            provision.create(ctx, action.instance, action.host, progress, start="start" in kinds)
            started = "start" in kinds
        elif step.kind == "start":
            if not started:  # a create with its start runs both, rolled back together
                progress(action.vm, "start", "")
                ctx.host(action.host).start(action.vm)
                started = True
        elif step.kind == "remove":
            provision.remove(ctx, action.host, action.vm, progress)
        else:
            _change_step(ctx, action, step, progress)
    return _outcome(action, started), started


def needs_wait(action: Action) -> bool:
    """Whether a started VM is awaited: its `ready` check is not `none`."""
    return action.instance is not None and action.instance.fields.ready.wait_for != "none"


def await_ready(ctx: FleetContext, action: Action, progress: Progress) -> float:
    """Wait until a started VM passes its readiness check; seconds waited (GuestError on
    timeout)."""
    instance = action.instance
    assert instance is not None
    progress(action.vm, "ready", instance.fields.ready.wait_for)
    reach = provision.access(ctx, instance, action.host)
    return provision.wait_ready(ctx, instance, action.host, reach)


def _change_step(ctx: FleetContext, action: Action, step: Step, progress: Progress) -> None:
    """One step changing an existing VM (disks, definition, live changes, stop)."""
    instance = action.instance
    assert instance is not None
    host = ctx.host(action.host)
    pool = ctx.host_specs()[action.host].pool
    vm = action.vm
    progress(vm, step.kind, step.target)
    if step.kind == "add-disk":
        provision.add_data_disk(ctx, instance, action.host, int(step.target.removeprefix("data-")))
    elif step.kind == "grow-disk":
        (change,) = step.changes
        capacity = int(change.new)  # type: ignore[call-overload]
        if step.live:
            host.block_resize(vm, _device(step.target), capacity)
        else:
            host.resize_volume(
                pool, names.volume(fleet=ctx.fleet, vm=vm, role=step.target), capacity
            )
    elif step.kind == "define":
        disks = provision.with_overlays(
            host, vm, provision.existing_disks(ctx, instance, action.host)
        )
        host.define(provision.domain_config(ctx, instance, host, action.host, disks).to_xml())
    elif step.kind == "change-live":
        for change in step.changes:
            if change.field == "memory":
                mib = int(change.new) // (1024 * 1024)  # type: ignore[call-overload]
                host.set_memory(vm, mib, live=True, config=False)
        host.set_owner(vm, owner(ctx, instance, host), live=True, config=False)
    elif step.kind == "remove-disk":
        host.delete_volume(pool, names.volume(fleet=ctx.fleet, vm=vm, role=step.target))
    elif step.kind == "stop":
        host.shutdown(vm, timeout=60.0)
    else:
        raise ValueError(f"not a VM step: {step.kind}")


def _device(role: str) -> str:
    """The disk target of a volume role: root is vda, the seed vdb, data-N vdc…"""
    if role == "root":
        return "vda"
    return f"vd{chr(ord('c') + int(role.removeprefix('data-')))}"


def _outcome(action: Action, started: bool) -> str:
    if action.kind == "orphan":
        return "removed"
    if action.kind == "create":
        if started:
            return "created"
        standby = action.instance is not None and action.instance.fields.power == "off"
        return "defined; standby (power: off)" if standby else "defined; its group starts it"
    if action.kind == "unchanged" and not action.pending:
        return "started"
    pending = [c.field for c in action.pending]
    restarted = any(s.kind == "stop" for s in action.steps)
    if pending and not restarted:
        return "changed; takes effect at next boot: " + ", ".join(pending)
    return "changed and restarted" if restarted else "changed"
