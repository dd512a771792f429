"""The test farm's decisions: which cells, which VM each is, which phases run and from
which file, and which snapshot a cell may start from. Data in, data out.

Phases run in this order (the seed lists the same phases; `create init` comes after
`dependencies`, since the `init` snapshot is what dependencies leave behind):
restore init, restore clean, startup, create clean, dependencies, create init, init, main,
terminate, shutdown. A restored `init` skips everything up to and including `create init`;
a restored `clean` skips startup and `create clean`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vmfleet.errors import UsageError
from vmfleet.spec.farm import FarmSpec, Phase
from vmfleet.spec.importers.common import slug

ORDER: tuple[Phase, ...] = (
    "restore init",
    "restore clean",
    "startup",
    "create clean",
    "dependencies",
    "create init",
    "init",
    "main",
    "terminate",
    "shutdown",
)
SCRIPTED: frozenset[Phase] = frozenset({"startup", "dependencies", "init", "main", "terminate"})
"""Phases that run a file from the phases folder (startup after the VM is up and ready)."""
SUFFIXES = (".sh", ".yaml", ".yml")
"""A phase file is a shell script (`.sh`) or an Ansible playbook (`.yaml`, `.yml`)."""

Stage = Literal["clean", "init"]


@dataclass(frozen=True, slots=True)
class Cell:
    """One platform x target of the matrix and the VM that runs it."""

    platform: str
    target: str
    vm: str

    @property
    def label(self) -> str:
        return f"{self.platform}/{self.target}"


@dataclass(frozen=True, slots=True)
class Step:
    """What happens to one phase of one cell: run it (from `file` for scripted phases), or
    skip it for `reason`."""

    phase: Phase
    run: bool
    reason: str = ""
    file: str | None = None


def cells(farm: FarmSpec, only: Sequence[str] = ()) -> tuple[Cell, ...]:
    """The matrix's cells: targets x platforms, then the list, each once; `only` keeps those
    named `platform/target` (a UsageError names one that is not in the matrix). A cell's VM
    is `<project id>-<platform>-<target>` made a valid name, so two projects' farms on one
    host do not collide."""
    pairs = [(p, t) for t in farm.matrix.targets for p in farm.matrix.platforms]
    pairs += [(c.platform, c.target) for c in farm.matrix.cells]
    project = farm.project.id
    found = tuple(Cell(p, t, slug(f"{project}-{p}-{t}")) for p, t in dict.fromkeys(pairs))
    if not only:
        return found
    labels = {c.label: c for c in found}
    unknown = [o for o in only if o not in labels]
    if unknown:
        raise UsageError(
            f"{', '.join(unknown)} is not a cell of the matrix "
            f"(cells: {', '.join(labels) or 'none'})"
        )
    return tuple(c for c in found if c.label in set(only))


def vm_fields(farm: FarmSpec, cell: Cell) -> dict[str, Any]:
    """The cell's VM as native template fields: the target's architecture settings and the
    platform's image (and kernel, for direct kernel boot), login user, size and snapshot
    type."""
    target = farm.target(cell.target)
    platform = farm.platforms[cell.platform]
    assert target is not None  # FarmSpec checked every matrix name
    fields: dict[str, Any] = {
        "arch": target.arch,
        "machine": target.machine,
        "cpu_model": target.cpu,
        "firmware": target.firmware,
        "vcpus": platform.vcpus or target.vcpus,
        # In bytes, as the spec holds it: a bare number would be read as MiB again.
        "memory": f"{platform.memory}B" if platform.memory else None,
        "image": platform.images.get(cell.target, platform.image),
        "kernel": platform.kernels.get(cell.target, platform.kernel),
        "snapshot_type": platform.snapshot_type or target.snapshot_type,
        # Merged field by field with `defaults`' cloud_init: only the login user changes.
        "cloud_init": {"user": platform.user} if platform.user else None,
        "description": f"farm cell {cell.label}",
    }
    return {k: v for k, v in fields.items() if v is not None}


def snapshot_name(stage: Stage, farm: FarmSpec) -> str:
    """The snapshot caching `stage`, tagged with the project's id and revision."""
    return slug(f"farm-{stage}-{farm.project.id}-r{farm.project.revision}")


def is_stale(name: str, farm: FarmSpec) -> bool:
    """A farm snapshot of this project from another revision."""
    prefixes = [slug(f"farm-{stage}-{farm.project.id}-r") for stage in ("clean", "init")]
    current = {snapshot_name("clean", farm), snapshot_name("init", farm)}
    return name not in current and any(name.startswith(p) for p in prefixes)


def phase_candidates(cell: Cell, phase: Phase) -> tuple[str, ...]:
    """Where a phase's file may be, relative to the phases folder, first match wins:
    `<platform>_<target>/`, then `<platform>/`, then `common/`."""
    return tuple(
        f"{folder}/{phase}{suffix}"
        for folder in (f"{cell.platform}_{cell.target}", cell.platform, "common")
        for suffix in SUFFIXES
    )


def steps(
    cell: Cell, allowed: Collection[Phase], cached: Collection[Stage], files: Collection[str]
) -> tuple[Step, ...]:
    """Every phase of a cell in ORDER, run or skipped with the reason.

    `cached` holds the stages whose snapshot exists at the project's revision; `files` the
    phase files present (relative paths, as `phase_candidates` gives them).
    """
    restored: Stage | None = None
    if "restore init" in allowed and "init" in cached:
        restored = "init"
    elif "restore clean" in allowed and "clean" in cached:
        restored = "clean"
    covered = {
        "init": {"restore clean", "startup", "create clean", "dependencies", "create init"},
        "clean": {"startup", "create clean"},
        None: set(),
    }[restored]
    out = []
    for phase in ORDER:
        if phase not in allowed:
            out.append(Step(phase, False, "not an allowed phase"))
        elif phase in covered:
            out.append(Step(phase, False, f"restored from the {restored} snapshot"))
        elif phase.startswith("restore "):
            ok = phase == f"restore {restored}"
            out.append(Step(phase, ok, "" if ok else "no snapshot at this revision"))
        elif phase.startswith("create ") and phase[len("create ") :] in cached:
            out.append(Step(phase, False, "snapshot exists at this revision"))
        elif phase in SCRIPTED:
            file = next((f for f in phase_candidates(cell, phase) if f in files), None)
            if file is None and phase != "startup":
                out.append(Step(phase, False, "no phase file"))
            else:
                out.append(Step(phase, True, file=file))
        else:
            out.append(Step(phase, True))
    return tuple(out)
