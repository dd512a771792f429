"""The `Fleet` methods that move running VMs between hosts: migrate, drain, uncordon,
rebalance, evacuate. Each first settles moves an interrupted run left (`Recovered` events),
then reports its VMs' phases as `VmProgress` events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vmfleet import engine
from vmfleet.api.base import FleetBase
from vmfleet.api.events import Recovered
from vmfleet.engine.context import FleetContext

if TYPE_CHECKING:  # `vmfleet.api.MoveReport` is the engine's report, loaded on first use
    from vmfleet.core.moves import MovePlan
    from vmfleet.engine.migrate import Report as MoveReport


@dataclass(frozen=True, slots=True)
class MoveResult:
    """A plan of moves (with the VMs that stay, and why, and the load of every host before
    and after) and, when it was carried out, a report per move done and the error per move
    that failed."""

    plan: MovePlan
    done: tuple[MoveReport, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)
    applied: bool = False


@dataclass(frozen=True, slots=True)
class EvacuationResult:
    """VM -> the host it was recreated on; VMs left (with reasons); VMs that failed."""

    host: str
    recreated: Mapping[str, str]
    stuck: Mapping[str, tuple[str, ...]]
    failed: Mapping[str, str]


class Moves(FleetBase):
    """Moving VMs; see `Fleet`."""

    def _settle(self, ctx: FleetContext) -> None:
        for item in engine.recover(ctx):
            self._on_event(Recovered(item))

    def migrate(
        self,
        vm: str,
        *,
        to: str | None = None,
        offline: bool = False,
        bandwidth: int | None = None,
        max_downtime: int | None = None,
        timeout: float | None = None,
        force: bool = False,
    ) -> MoveReport:
        """Move one VM to `to` (None: the host placement picks) while it runs, or stopped
        with `offline` (a live move libvirt refuses falls back to that, and says so in
        `fallback`). `bandwidth` MiB/s, `max_downtime` ms; `timeout` cancels a live move
        (the VM stays put) or bounds an offline move's guest shutdown. PlacementError with
        the reasons when `to` breaks a required rule, unless `force`."""
        options = engine.migrate.Options(
            to=to,
            offline=offline,
            bandwidth=bandwidth,
            max_downtime=max_downtime,
            timeout=timeout,
            force=force,
        )
        with self._locked(f"migrate {vm}") as ctx:
            self._settle(ctx)
            return engine.migrate.migrate(ctx, vm, options, self._stage(f"migrate {vm}", [vm]))

    def drain(self, host: str, *, parallel: int = 1) -> MoveResult:
        """Cordon `host` and move every VM of the fleet off it live, `parallel` at a time."""
        with self._locked(f"drain {host}") as ctx, self._timed(ctx, "drain"):
            self._settle(ctx)
            plan = engine.moves.drain_plan(ctx, host)
            return self._carry_out(ctx, plan, f"drain {host}", parallel)

    def uncordon(self, host: str) -> bool:
        """Make a drained or evacuated host schedulable again; False if it was not cordoned."""
        with self._locked(f"uncordon {host}") as ctx:
            return engine.moves.uncordon(ctx, host)

    def rebalance(
        self, *, apply: bool = False, max_moves: int = 10, parallel: int = 1
    ) -> MoveResult:
        """Moves that lower the highest host load and repair broken preferences, fewest
        first (at most `max_moves`); carried out live when `apply`."""
        if not apply:
            ctx = self._context(readonly=True)  # a proposal writes nothing
            return MoveResult(engine.moves.rebalance_plan(ctx, max_moves=max_moves))
        with self._locked("rebalance") as ctx, self._timed(ctx, "rebalance"):
            self._settle(ctx)
            plan = engine.moves.rebalance_plan(ctx, max_moves=max_moves)
            return self._carry_out(ctx, plan, "rebalance", parallel)

    def _carry_out(
        self, ctx: FleetContext, plan: MovePlan, title: str, parallel: int
    ) -> MoveResult:
        progress = self._stage(title, [m.vm for m in plan.moves])
        run = engine.moves.execute(ctx, plan, progress, parallel=parallel)
        return MoveResult(plan, tuple(run.done), dict(run.failed), applied=True)

    def evacuate(self, host: str, *, parallel: int = 4) -> EvacuationResult:
        """Recreate elsewhere, from image and cloud-init, the VMs of `host`, which is down
        (their local disk contents are lost); `up` removes the stale copies when it is back."""
        with self._locked(f"evacuate {host}") as ctx, self._timed(ctx, "evacuate"):
            self._settle(ctx)
            progress = self._stage(f"evacuate {host}", [])
            result = engine.evacuate.evacuate(ctx, host, progress, workers=parallel)
        return EvacuationResult(host, dict(result.moved), dict(result.stuck), dict(result.failed))
