"""Running the test farm's cells: each cell's phases on its VM, cells in parallel with at
most `farm.per_host` cells per hypervisor, snapshots as the phase cache.

A phase file runs over SSH (`sh -s`, the script on stdin) or, for a playbook, through
`ansible-playbook` against the farm's inventory, both through the command runner. A phase
that fails fails its cell: later phases are skipped, the logs stay in the logs folder, and
the VM is shut down (snapshots kept) unless `keep_failed` leaves it as it is. Snapshot calls
and starts are serialised by one lock; phases and shutdowns (which wait up to two minutes
for the guest to power off) run in parallel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vmfleet.core import farm as core_farm
from vmfleet.core.farm import Cell, Step
from vmfleet.drivers.commands import CommandResult, CommandRunner
from vmfleet.engine import snapshots
from vmfleet.engine.access import Endpoint
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, OperationTimeout
from vmfleet.spec.farm import FarmSpec

Status = Literal["passed", "failed", "skipped"]
Progress = Callable[[Cell, str, str], None]
"""Called with (cell, phase, status) as each phase starts and ends."""


@dataclass(frozen=True, slots=True)
class PhaseResult:
    phase: str
    status: Status
    seconds: float = 0.0
    detail: str = ""
    stdout: str = ""
    stderr: str = ""
    log: Path | None = None


@dataclass(frozen=True, slots=True)
class CellResult:
    cell: Cell
    host: str
    phases: tuple[PhaseResult, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(p.status != "failed" for p in self.phases)

    @property
    def failed_phase(self) -> str | None:
        return next((p.phase for p in self.phases if p.status == "failed"), None)


@dataclass(frozen=True)
class Job:
    """What every cell of one run shares."""

    farm: FarmSpec
    phases_dir: Path
    logs_dir: Path
    inventory: Path
    runner: CommandRunner
    locate: Callable[[str], Endpoint]
    keep_failed: bool = False
    timeout: float = 3600.0
    ready_timeout: float = 600.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def run(
    ctx: FleetContext,
    cells: Sequence[Cell],
    hosts: Mapping[str, str],
    job: Job,
    *,
    jobs: int = 4,
    progress: Progress | None = None,
) -> list[CellResult]:
    """Run every cell (`hosts` maps its VM to the hypervisor it is on); results in order."""
    limits = {h: threading.Semaphore(job.farm.per_host) for h in set(hosts.values())}

    def one(cell: Cell) -> CellResult:
        with limits[hosts[cell.vm]]:
            return run_cell(ctx, cell, hosts[cell.vm], job, progress=progress)

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(cells)))) as pool:
        return list(pool.map(one, cells))


def run_cell(
    ctx: FleetContext, cell: Cell, host: str, job: Job, *, progress: Progress | None = None
) -> CellResult:
    """One cell's phases in order; the first failure skips the rest."""
    started = time.monotonic()
    logs = job.logs_dir / cell.vm
    logs.mkdir(parents=True, exist_ok=True)
    files = {
        rel
        for phase in core_farm.SCRIPTED
        for rel in core_farm.phase_candidates(cell, phase)
        if (job.phases_dir / rel).is_file()
    }
    with job.lock:
        have = {s.name for s in ctx.host(host).list_snapshots(cell.vm)}
    cached: set[core_farm.Stage] = {
        stage for stage in ("clean", "init") if core_farm.snapshot_name(stage, job.farm) in have
    }
    results: list[PhaseResult] = []
    failed = False
    for step in core_farm.steps(cell, job.farm.phases.allowed, cached, files):
        if failed or not step.run:
            reason = "an earlier phase failed" if failed else step.reason
            result = PhaseResult(step.phase, "skipped", detail=reason)
        else:
            if progress:
                progress(cell, step.phase, "running")
            result = _phase(ctx, cell, host, step, job)
            failed = result.status == "failed"
        result = _logged(result, logs)
        if progress:
            progress(cell, step.phase, result.status)
        results.append(result)
    if failed and not job.keep_failed:
        results[-1] = _logged(_stop_after_failure(ctx, cell, host, job), logs)
    return CellResult(cell, host, tuple(results), time.monotonic() - started)


def _stop_after_failure(ctx: FleetContext, cell: Cell, host: str, job: Job) -> PhaseResult:
    """The `shutdown` phase of a failed cell: the VM is stopped, its snapshots kept."""
    t0 = time.monotonic()
    try:
        outcome = ctx.host(host).shutdown(cell.vm, timeout=60.0)
    except FleetError as error:
        return PhaseResult("shutdown", "failed", time.monotonic() - t0, f"after failure: {error}")
    detail = f"stopped after the failure ({outcome}); --keep-failed leaves it running"
    return PhaseResult("shutdown", "passed", time.monotonic() - t0, detail)


def _phase(ctx: FleetContext, cell: Cell, host: str, step: Step, job: Job) -> PhaseResult:
    t0 = time.monotonic()
    try:
        if step.phase.startswith(("restore ", "create ")):
            detail = _snapshot(ctx, cell, step, job)
            if step.phase.startswith("restore "):
                # A disk-only (external) snapshot holds no RAM: the VM boots again.
                _wait_for_login(cell, job)
            return PhaseResult(step.phase, "passed", time.monotonic() - t0, detail)
        if step.phase == "shutdown":
            # Not under the lock: a guest slow to power off must not hold up other cells.
            outcome = ctx.host(host).shutdown(cell.vm, timeout=120.0)
            return PhaseResult(step.phase, "passed", time.monotonic() - t0, f"stopped ({outcome})")
        if step.phase == "startup":
            _start(ctx, cell, host, job)
        if step.file is None:
            return PhaseResult(step.phase, "passed", time.monotonic() - t0, "ready")
        done = _run_file(cell, job.phases_dir / step.file, job)
    except FleetError as error:
        return PhaseResult(step.phase, "failed", time.monotonic() - t0, str(error))
    status: Status = "passed" if done.ok else "failed"
    return PhaseResult(
        step.phase,
        status,
        time.monotonic() - t0,
        f"{step.file}: exit {done.returncode}",
        done.stdout_text(),
        done.stderr_text(),
    )


def _snapshot(ctx: FleetContext, cell: Cell, step: Step, job: Job) -> str:
    verb, stage = step.phase.split(" ")
    name = core_farm.snapshot_name("init" if stage == "init" else "clean", job.farm)
    with job.lock:
        member = snapshots.members(ctx, vms=[cell.vm])
        if verb == "restore":
            result = snapshots.revert(ctx, member, name)[0]
        else:
            result = snapshots.create(ctx, member, name).results[0]
    if not result.ok:
        raise FleetError(f"{step.phase} ({name}): {result.detail}")
    return f"{name}: {result.detail}"


def _start(ctx: FleetContext, cell: Cell, host: str, job: Job) -> None:
    """Start the VM if it is off, then wait until an SSH login works."""
    with job.lock:
        member = snapshots.members(ctx, vms=[cell.vm])[0]
        if member.state != "running":
            ctx.host(host).start(cell.vm)
    _wait_for_login(cell, job)


def _wait_for_login(cell: Cell, job: Job) -> None:
    """Wait until an SSH login to the cell's VM works (at most `job.ready_timeout`)."""
    deadline = time.monotonic() + job.ready_timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            probe = job.runner.run(
                _ssh_argv(job.locate(cell.vm)), input=b"true\n", timeout=30.0, check=False
            )
        except OperationTimeout as error:
            last = str(error)
        else:
            if probe.ok:
                return
            last = probe.stderr_text().strip()
        time.sleep(2.0)
    raise FleetError(f"{cell.vm}: no SSH login within {job.ready_timeout:.0f}s: {last}")


def _run_file(cell: Cell, path: Path, job: Job) -> CommandResult:
    if path.suffix == ".sh":
        return job.runner.run(
            _ssh_argv(job.locate(cell.vm)),
            input=path.read_bytes(),
            timeout=job.timeout,
            check=False,
        )
    argv = ["ansible-playbook", "-i", str(job.inventory), "--limit", cell.vm, str(path)]
    return job.runner.run(argv, timeout=job.timeout, check=False)


def _ssh_argv(ep: Endpoint) -> list[str]:
    if ep.address is None:
        raise FleetError(f"{ep.vm} has no address yet (state {ep.state})")
    return [
        "ssh",
        "-i",
        str(ep.key),
        "-p",
        str(ep.port),
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        f"UserKnownHostsFile={ep.known_hosts}",
        "-o",
        f"HostKeyAlias={ep.vm}",
        "-o",
        f"StrictHostKeyChecking={'yes' if ep.strict else 'accept-new'}",
        *(["-J", ep.proxy_jump] if ep.proxy_jump else []),
        f"{ep.user}@{ep.address}",
        "sh",
        "-s",
    ]


def _logged(result: PhaseResult, logs: Path) -> PhaseResult:
    """The phase's log file: its outcome, then stdout and stderr."""
    path = logs / f"{result.phase.replace(' ', '-')}.log"
    path.write_text(
        f"phase: {result.phase}\nstatus: {result.status}\nseconds: {result.seconds:.2f}\n"
        f"detail: {result.detail}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n"
    )
    return PhaseResult(
        result.phase,
        result.status,
        result.seconds,
        result.detail,
        result.stdout,
        result.stderr,
        path,
    )
