"""Draining a host and rebalancing the fleet: plan with `core.moves`, move with `migrate`.

`drain` cordons the host first (kept in the state store until `uncordon`), so neither the
plan nor a later `up` puts VMs back on it. The planned moves run `parallel` at a time;
every move is checked when planned (each against the ones before it), and at any moment
during the run each VM is on its source or its target, which the plan already allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from vmfleet.core import moves as core
from vmfleet.engine import migrate
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, UsageError

Progress = Callable[[str, str, str], None]


@dataclass
class MoveRun:
    """A plan and what came of it: one report per move done, the error per move failed."""

    plan: core.MovePlan
    done: list[migrate.Report] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _require_host(ctx: FleetContext, host: str) -> None:
    if host not in ctx.host_specs():
        raise UsageError(f"no host {host} in fleet {ctx.fleet}")


def drain_plan(ctx: FleetContext, host: str) -> core.MovePlan:
    """Cordon `host`, then plan moving every VM of the fleet off it."""
    _require_host(ctx, host)
    ctx.store.cordon(host)
    vms, _observed = migrate.current(ctx)
    strategy = ctx.loaded.spec.placement.strategy
    return core.drain(migrate.facts(ctx), vms, host, strategy=strategy)


def uncordon(ctx: FleetContext, host: str) -> bool:
    """Make a drained host schedulable again; False when it was not cordoned."""
    _require_host(ctx, host)
    return ctx.store.uncordon(host)


def rebalance_plan(ctx: FleetContext, *, max_moves: int) -> core.MovePlan:
    vms, _observed = migrate.current(ctx)
    strategy = ctx.loaded.spec.placement.strategy
    return core.rebalance(migrate.facts(ctx), vms, max_moves=max_moves, strategy=strategy)


def execute(
    ctx: FleetContext,
    plan: core.MovePlan,
    progress: Progress,
    *,
    parallel: int = 1,
    options: migrate.Options | None = None,
) -> MoveRun:
    """Run a plan's moves, `parallel` at a time (live; each falls back as `migrate` does)."""
    run = MoveRun(plan)
    if not plan.moves:
        return run
    opts = options or migrate.Options()
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(plan.moves)))) as pool:
        futures = {
            pool.submit(
                migrate.migrate, ctx, m.vm, opts, progress, source=m.source, target=m.target
            ): m
            for m in plan.moves
        }
        for future in as_completed(futures):
            move = futures[future]
            try:
                report = future.result()
            except FleetError as error:
                run.failed[move.vm] = str(error)
                progress(move.vm, "failed", str(error))
                continue
            run.done.append(report)
            progress(move.vm, "done", f"on {move.target} ({report.seconds:.1f} s)")
    return run
