"""The `farm:` section: a test farm of targets (architectures) x platforms (images).

Each matrix cell (platform, target) becomes one VM of a separate fleet `<fleet>-farm`; its
provisioning phases are found under `phases.dir` and its progress is cached in snapshots
tagged with the project's id and revision. Targets `amd64`, `arm64` and `ppc64` are built in
with the settings of the ansible_farm example (seed 003); a target given here replaces them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from vmfleet.errors import Problem
from vmfleet.spec.source import Document
from vmfleet.spec.values import Count, Line, LoginUser, MemorySize, Name

KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")

Phase = Literal[
    "startup",
    "restore init",
    "create init",
    "restore clean",
    "create clean",
    "dependencies",
    "init",
    "main",
    "terminate",
    "shutdown",
]

PHASES: tuple[Phase, ...] = get_args(Phase)  # in the order they run


def _key(value: Any) -> str:
    if not isinstance(value, str) or not KEY_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid platform or target name: letters, digits, '_', '.', '-' "
            "(at most 40, starting with a letter or digit)"
        )
    return value


FarmKey = Annotated[str, BeforeValidator(_key)]
"""A platform or target name as the user writes it (`debian_12`, `Arch-Linux`); it names
phase folders, so case and '_' are kept; the cell's VM name is made valid from it."""


def _revision(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"a revision is text or a number, got {value!r}")
    text = str(value)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}", text):
        raise ValueError(f"{text!r} is not a valid revision: letters, digits, '_', '.', '-'")
    return text


Revision = Annotated[str, BeforeValidator(_revision)]


class Model(BaseModel):
    """As `models.Model` (which imports this module): frozen, unknown keys are errors."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False, defer_build=True
    )


class FarmTarget(Model):
    """How to run one architecture: the seed's target definition."""

    arch: Line
    emulator: Line | None = None
    machine: Line | None = None
    cpu: Line | None = None
    firmware: Literal["bios", "uefi"] | None = None
    default_bus: Line | None = None
    vcpus: Count | None = Field(default=None, gt=0, le=64)
    snapshot_type: Literal["auto", "internal", "external"] | None = None


# Built without validation (constants; and so importing the spec builds no validator).
BUILTIN_TARGETS: dict[str, FarmTarget] = {
    "amd64": FarmTarget.model_construct(
        arch="x86_64", emulator="/usr/bin/qemu-system-x86_64", machine="q35"
    ),
    "arm64": FarmTarget.model_construct(
        arch="aarch64",
        emulator="/usr/bin/qemu-system-aarch64",
        machine="virt",
        cpu="cortex-a57",
        firmware="uefi",
        vcpus=1,
        snapshot_type="external",
    ),
    "ppc64": FarmTarget.model_construct(
        arch="ppc64le",
        emulator="/usr/bin/qemu-system-ppc64le",
        machine="pseries",
        cpu="POWER9",
        vcpus=1,
        default_bus="pci.0",
    ),
}


class KernelBoot(Model):
    """Direct kernel boot of a VM (`kernel:` of a VM, or of a farm platform per target)."""

    kernel: Line
    initrd: Line | None = None
    cmdline: Line = ""


class FarmPlatform(Model):
    """An operating system to test on: its image (per target, or one for all), login user
    and `ready` (`ssh` or `port`, the latter for ansible_farm's `wait_until_port_reachable`:
    either way a cell waits for an SSH login, whose check runs `true` in a shell and so needs
    no python or agent in the image); `kernel` (or `kernels` per target) boots the VM from a
    kernel and initrd instead of the image's boot loader."""

    image: Name | None = None
    images: dict[FarmKey, Name] = Field(default_factory=dict)
    kernel: KernelBoot | None = None
    kernels: dict[FarmKey, KernelBoot] = Field(default_factory=dict)
    user: LoginUser | None = None
    ready: Literal["ssh", "port"] = "ssh"
    memory: MemorySize | None = None
    vcpus: Count | None = Field(default=None, gt=0, le=64)
    snapshot_type: Literal["auto", "internal", "external"] | None = None


class FarmCell(Model):
    platform: FarmKey
    target: FarmKey


class FarmMatrix(Model):
    """Cells: every target x every platform, then `list` (duplicates kept once)."""

    targets: list[FarmKey] = Field(default_factory=list)
    platforms: list[FarmKey] = Field(default_factory=list)
    cells: list[FarmCell] = Field(default_factory=list, alias="list")


class FarmPhases(Model):
    """Where phase files are (relative to the fleet file) and which phases run."""

    dir: Line = "phases"
    allowed: list[Phase] = Field(default_factory=lambda: list(PHASES))


class FarmProject(Model):
    id: Line
    revision: Revision = "0"


class FarmSpec(Model):
    targets: dict[FarmKey, FarmTarget] = Field(default_factory=dict)
    platforms: dict[FarmKey, FarmPlatform] = Field(default_factory=dict)
    matrix: FarmMatrix = Field(default_factory=FarmMatrix)
    phases: FarmPhases = Field(default_factory=FarmPhases)
    project: FarmProject
    per_host: Count = Field(default=2, gt=0, le=64)

    def target(self, name: str) -> FarmTarget | None:
        """The target's settings: the file's, else the built-in one."""
        return self.targets.get(name) or BUILTIN_TARGETS.get(name)

    @model_validator(mode="after")
    def _known(self) -> FarmSpec:
        cells = [(p, t) for t in self.matrix.targets for p in self.matrix.platforms]
        cells += [(c.platform, c.target) for c in self.matrix.cells]
        unknown_t = sorted({t for _, t in cells if self.target(t) is None})
        if unknown_t:
            known = sorted({*BUILTIN_TARGETS, *self.targets})
            raise ValueError(
                f"matrix names unknown target(s) {', '.join(unknown_t)}; "
                f"define them under farm.targets (known: {', '.join(known)})"
            )
        unknown_p = sorted({p for p, _ in cells if p not in self.platforms})
        if unknown_p:
            raise ValueError(
                f"matrix names platform(s) {', '.join(unknown_p)} not defined under farm.platforms"
            )
        return self


def problems(farm: FarmSpec, images: Mapping[str, Any], doc: Document) -> list[Problem]:
    """Each cell's image, when given, must be defined in `images:` and be of the cell
    target's arch (`farm run` refuses a cell without an image)."""
    found: list[Problem] = []
    cells = [(p, t) for t in farm.matrix.targets for p in farm.matrix.platforms]
    cells += [(c.platform, c.target) for c in farm.matrix.cells]
    for platform, target in dict.fromkeys(cells):
        spec = farm.platforms[platform]
        image = spec.images.get(target, spec.image)
        key: tuple[str, ...] = ("images", target) if target in spec.images else ("image",)
        where = ("farm", "platforms", platform, *key)
        arch = farm.target(target).arch  # type: ignore[union-attr]  # checked by FarmSpec
        if image is None:
            continue  # allowed until the farm runs (an imported inventory names none)
        if image not in images:
            known = ", ".join(sorted(images)) or "none are defined"
            found.append(doc.problem(where, f"unknown image {image!r}; known: {known}"))
        elif images[image].arch != arch:
            found.append(
                doc.problem(
                    where,
                    f"image {image!r} is {images[image].arch}, target "
                    f"{target!r} runs {arch}; give it per target in images",
                )
            )
    return list(dict.fromkeys(found))
