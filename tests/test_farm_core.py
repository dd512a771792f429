"""The farm's pure decisions: matrix cells, phase selection and order, the phase file
lookup `<platform>_<target>/` → `<platform>/` → `common/`, and snapshot cache names."""

from __future__ import annotations

import pytest

from vmfleet.core import farm
from vmfleet.core.farm import Cell
from vmfleet.errors import UsageError
from vmfleet.spec.farm import PHASES, FarmSpec
from vmfleet.spec.models import VmTemplate


def spec(**matrix: object) -> FarmSpec:
    return FarmSpec.model_validate(
        {
            "project": {"id": "example_04.vde", "revision": 3},
            "platforms": {"debian_12": {"image": "deb"}, "Arch-Linux": {"image": "arch"}},
            "matrix": matrix,
        }
    )


SEED = spec(
    targets=["amd64", "arm64", "ppc64"],
    platforms=["debian_12"],
    list=[
        {"platform": "Arch-Linux", "target": "amd64"},
        {"platform": "debian_12", "target": "amd64"},
    ],
)
CELL = Cell("debian_12", "arm64", "example-04-vde-debian-12-arm64")


def test_cells_are_targets_times_platforms_then_the_list_each_once() -> None:
    assert [c.label for c in farm.cells(SEED)] == [
        "debian_12/amd64",
        "debian_12/arm64",
        "debian_12/ppc64",
        "Arch-Linux/amd64",
    ]
    assert [c.vm for c in farm.cells(SEED)][-1] == "example-04-vde-arch-linux-amd64"


def test_only_keeps_named_cells_and_rejects_unknown_ones() -> None:
    assert [c.vm for c in farm.cells(SEED, ["debian_12/arm64"])] == [CELL.vm]
    with pytest.raises(UsageError, match="riscv/x is not a cell"):
        farm.cells(SEED, ["riscv/x"])


def test_cell_vm_takes_the_targets_architecture_and_the_platforms_image() -> None:
    fields = farm.vm_fields(SEED, CELL)
    assert fields["arch"] == "aarch64" and fields["machine"] == "virt"
    assert fields["cpu_model"] == "cortex-a57" and fields["firmware"] == "uefi"
    assert fields["snapshot_type"] == "external" and fields["image"] == "deb"
    amd64 = farm.vm_fields(SEED, Cell("Arch-Linux", "amd64", "arch-linux-amd64"))
    assert amd64["arch"] == "x86_64" and amd64["machine"] == "q35" and amd64["image"] == "arch"
    assert "firmware" not in amd64


def test_a_platform_boots_its_kernel_per_target_else_its_default_kernel() -> None:
    farm_spec = FarmSpec.model_validate(
        {
            "project": {"id": "p"},
            "platforms": {
                "micro": {
                    "image": "disk",
                    "kernel": {"kernel": "/k/any", "cmdline": "quiet"},
                    "kernels": {"arm64": {"kernel": "/k/arm", "initrd": "/k/arm.img"}},
                },
                "debian_12": {"image": "deb"},
            },
            "matrix": {"targets": ["amd64", "arm64"], "platforms": ["micro", "debian_12"]},
        }
    )
    kernels = {c.label: farm.vm_fields(farm_spec, c).get("kernel") for c in farm.cells(farm_spec)}
    assert kernels["micro/arm64"].model_dump() == {
        "kernel": "/k/arm",
        "initrd": "/k/arm.img",
        "cmdline": "",
    }
    assert kernels["micro/amd64"].model_dump() == {
        "kernel": "/k/any",
        "initrd": None,
        "cmdline": "quiet",
    }
    assert kernels["debian_12/amd64"] is None


def test_a_platforms_memory_and_user_reach_the_cell_vm() -> None:
    farm_spec = FarmSpec.model_validate(
        {
            "project": {"id": "p"},
            "platforms": {
                "small": {"image": "disk", "memory": "256MiB", "user": "farmer"},
                "plain": {"image": "disk"},
            },
            "matrix": {"targets": ["amd64"], "platforms": ["small", "plain"]},
        }
    )
    small, plain = (
        VmTemplate.model_validate(farm.vm_fields(farm_spec, c)) for c in farm.cells(farm_spec)
    )
    assert small.memory == 256 * 2**20  # not read as 256 Mi MiB
    assert small.cloud_init is not None and small.cloud_init.user == "farmer"
    assert plain.cloud_init is None  # the fleet's defaults (or ssh.user) decide


def test_lookup_prefers_platform_target_then_platform_then_common() -> None:
    assert farm.phase_candidates(CELL, "main")[::3] == (
        "debian_12_arm64/main.sh",
        "debian_12/main.sh",
        "common/main.sh",
    )
    files = {"common/main.sh", "debian_12/main.yaml"}
    (main,) = [s for s in farm.steps(CELL, PHASES, set(), files) if s.phase == "main"]
    assert main.file == "debian_12/main.yaml"


def run_or_reason(cached: set[str], allowed: tuple[str, ...] = PHASES) -> dict[str, str]:
    files = {f"common/{p}.sh" for p in ("dependencies", "init", "main", "terminate")}
    return {
        s.phase: "run" if s.run else s.reason
        for s in farm.steps(CELL, allowed, cached, files)  # type: ignore[arg-type]
    }


@pytest.mark.parametrize(
    ("cached", "expected"),
    [
        (
            set(),
            {
                "restore init": "no snapshot at this revision",
                "startup": "run",
                "create clean": "run",
                "dependencies": "run",
                "create init": "run",
                "main": "run",
            },
        ),
        (
            {"init", "clean"},
            {
                "restore init": "run",
                "restore clean": "restored from the init snapshot",
                "startup": "restored from the init snapshot",
                "dependencies": "restored from the init snapshot",
                "main": "run",
            },
        ),
        (
            {"clean"},
            {
                "restore clean": "run",
                "startup": "restored from the clean snapshot",
                "dependencies": "run",
                "create init": "run",
            },
        ),
    ],
)
def test_a_cached_snapshot_skips_what_it_holds(cached: set[str], expected: dict[str, str]) -> None:
    got = run_or_reason(cached)
    assert {k: got[k] for k in expected} == expected
    assert list(got) == list(farm.ORDER)


def test_phases_not_allowed_are_skipped_and_restore_needs_its_phase() -> None:
    got = run_or_reason({"init"}, allowed=("startup", "dependencies", "main"))
    assert got["restore init"] == "not an allowed phase"
    assert got["dependencies"] == "run" and got["startup"] == "run"


def test_a_missing_phase_file_is_skipped_but_startup_always_runs() -> None:
    got = {s.phase: s for s in farm.steps(CELL, PHASES, set(), set())}
    assert got["main"].reason == "no phase file" and not got["main"].run
    assert got["startup"].run and got["startup"].file is None


def test_snapshot_names_carry_project_and_revision_and_old_ones_are_stale() -> None:
    assert farm.snapshot_name("init", SEED) == "farm-init-example-04-vde-r3"
    assert farm.is_stale("farm-init-example-04-vde-r2", SEED)
    assert not farm.is_stale("farm-init-example-04-vde-r3", SEED)
    assert not farm.is_stale("farm-init-other-r2", SEED)
    assert not farm.is_stale("nightly", SEED)
