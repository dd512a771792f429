"""The test farm as `Fleet` methods: `farm_run`, `farm_status`, `farm_clean`.

The farm's cells are VMs of a fleet of their own, `<fleet>-farm` (same state folder and
hosts, only the cell VMs), so `up --prune` of the file's own VMs never touches them and
placement sends each cell to a host whose libvirt runs its architecture.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import yaml

from vmfleet import engine
from vmfleet.api.base import FleetBase
from vmfleet.core import farm as core_farm
from vmfleet.core.farm import Cell
from vmfleet.errors import UsageError
from vmfleet.spec.farm import FarmSpec
from vmfleet.spec.load import LoadedFleet
from vmfleet.spec.models import VmTemplate

if TYPE_CHECKING:
    from vmfleet.api.fleet import Fleet
    from vmfleet.engine.farm import CellResult

CellCallback = Callable[[Cell, str, str], None]


@dataclass(frozen=True, slots=True)
class FarmRun:
    """A farm run: one result per cell, where the logs are, and the JUnit file if asked."""

    fleet: str
    cells: tuple[CellResult, ...]
    logs: Path
    junit: Path | None
    seconds: float

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cells)


@dataclass(frozen=True, slots=True)
class CellStatus:
    """A cell's VM as the hosts report it, and its farm snapshots."""

    cell: Cell
    host: str | None
    state: str
    snapshots: tuple[str, ...]


class FarmMethods(FleetBase):
    """The farm part of `Fleet`."""

    def farm(self) -> FarmSpec:
        """The file's `farm:` section (UsageError when it has none)."""
        if self.spec.farm is None:
            raise UsageError(f"{self.path} has no farm: section")
        return self.spec.farm

    def farm_fleet(self) -> Fleet:
        """The fleet of the farm's cell VMs (see the module docstring)."""
        farm = self.farm()
        imageless = sorted(
            {
                c.platform
                for c in core_farm.cells(farm)
                if "image" not in core_farm.vm_fields(farm, c)
            }
        )
        if imageless:
            raise UsageError(
                f"platform(s) {', '.join(imageless)} have no image: set "
                "farm.platforms.NAME.image (or images per target) to an image of `images:`"
            )
        vms = {
            cell.vm: VmTemplate.model_validate(core_farm.vm_fields(farm, cell))
            for cell in core_farm.cells(farm)
        }
        spec = self.spec.model_copy(
            update={"fleet": f"{self.name}-farm"[:63], "vms": vms, "groups": {}}
        )
        loaded = LoadedFleet(spec, self.loaded.document, self.loaded.format, self.path)
        return cast(
            "Fleet",
            type(self)(
                loaded,
                state=self.state_dir,
                hosts=self._host_factory,
                runner=self._runner,
                on_event=self._on_event,
                lock_wait=self._lock_wait,
            ),
        )

    def farm_run(
        self,
        only: Sequence[str] = (),
        *,
        jobs: int = 4,
        keep_failed: bool = False,
        junit_path: Path | None = None,
        on_cell: CellCallback | None = None,
        timeout: float = 3600.0,
    ) -> FarmRun:
        """Create the cells' VMs that do not exist yet (of the cells `only` names, as
        `platform/target`), run their phases, write the JUnit file; a failed cell is in the
        result, never raised."""
        started = time.monotonic()
        farm = self.farm()
        chosen = core_farm.cells(farm, only)
        fleet = self.farm_fleet()
        with fleet:
            # Only missing VMs: one that exists is started by `startup` or reverted by a
            # restore, so a cached run does not boot it first.
            have = {v.name for v in fleet.list() if v.state not in ("absent", "unreachable")}
            missing = [c.vm for c in chosen if c.vm not in have]
            up = fleet.up(missing) if missing else None
            broken = {o.vm: o.detail for o in (up.outcomes if up else ()) if not o.ok}
            logs = self.state_dir / "farm" / fleet.name / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            with fleet._locked(f"farm run {self.path}") as ctx:
                instances = {i.name: i for i in ctx.instances()}
                endpoints = engine.access.endpoints(ctx, [instances[c.vm] for c in chosen])
                inventory = logs / "inventory.yaml"
                inventory.write_text(yaml.safe_dump(engine.access.inventory(ctx, endpoints)))

                def locate(vm: str) -> engine.access.Endpoint:
                    return engine.access.endpoints(ctx, [instances[vm]])[0]

                job = engine.farm.Job(
                    farm=farm,
                    phases_dir=self.path.parent / farm.phases.dir,
                    logs_dir=logs,
                    inventory=inventory,
                    runner=self._runner,
                    locate=locate,
                    keep_failed=keep_failed,
                    timeout=timeout,
                )
                runnable = [c for c in chosen if c.vm not in broken]
                hosts = {e.vm: e.host for e in endpoints}
                done = {
                    r.cell.vm: r
                    for r in engine.farm.run(ctx, runnable, hosts, job, jobs=jobs, progress=on_cell)
                }
        results = tuple(done.get(c.vm) or _not_created(c, broken[c.vm]) for c in chosen)
        if junit_path is not None:
            engine.junit.write(junit_path, results, name=fleet.name)
        return FarmRun(fleet.name, results, logs, junit_path, time.monotonic() - started)

    def farm_status(self) -> tuple[CellStatus, ...]:
        """Each cell's VM (host, state) and the farm snapshots it holds."""
        fleet = self.farm_fleet()
        with fleet:
            seen = {v.name: v for v in fleet.list()}
            rows = []
            for cell in core_farm.cells(self.farm()):
                vm = seen.get(cell.vm)
                names: tuple[str, ...] = ()
                if vm is not None and vm.host and vm.state not in ("absent", "unreachable"):
                    listed = fleet.snapshot_list([cell.vm])
                    names = tuple(s.name for s in listed if s.name.startswith("farm-"))
                rows.append(
                    CellStatus(cell, vm.host if vm else None, vm.state if vm else "absent", names)
                )
            return tuple(rows)

    def farm_clean(self, *, stale: bool = False) -> tuple[str, ...]:
        """Remove the farm's VMs with their snapshots, or with `stale` only the farm
        snapshots of other project revisions; returns what was removed."""
        farm = self.farm()
        fleet = self.farm_fleet()
        with fleet:
            if not stale:
                return tuple(o.vm for o in fleet.down().outcomes if o.ok)
            removed = []
            with fleet._locked(f"farm clean {self.path}") as ctx:
                for status in self.farm_status():
                    for name in status.snapshots:
                        if core_farm.is_stale(name, farm):
                            member = engine.snapshots.members(ctx, vms=[status.cell.vm])
                            if engine.snapshots.delete(ctx, member, name)[0].ok:
                                removed.append(f"{status.cell.vm}/{name}")
            return tuple(removed)


def _not_created(cell: Cell, detail: str) -> CellResult:
    phase = engine.farm.PhaseResult("startup", "failed", detail=f"VM not created: {detail}")
    return engine.farm.CellResult(cell, "", (phase,), 0.0)
