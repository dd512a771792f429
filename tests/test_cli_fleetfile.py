"""Finding the fleet: `-f FILE` (repeatable, folders too), `$VMFLEET_FILE`, `vmfleet.yaml` or
`fleet.yaml` here or in a parent folder; the positional FILE keeps working; a fleet spread over
several files (seed 004's group manifest apart from its VMs) names the right file in errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.e2e_support import vmfleet

FIXTURES = Path(__file__).parent / "fixtures"
FLEET = "vms:\n  web: {replicas: 2, memory: 64MiB}\n  db: {}\n"


def names(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [vm["name"] for vm in json.loads(result.stdout)]


def test_default_file_is_found_in_a_parent_folder(tmp_path: Path) -> None:
    (tmp_path / "vmfleet.yaml").write_text(FLEET)
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    assert names(vmfleet("show", "-o", "json", cwd=below)) == ["web-0", "web-1", "db"]


def test_fleet_yaml_is_found_too(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(FLEET)
    assert names(vmfleet("show", "-o", "json", cwd=tmp_path)) == ["web-0", "web-1", "db"]


def test_env_var_names_the_file(tmp_path: Path) -> None:
    other = tmp_path / "lab.yaml"
    other.write_text("vms:\n  solo: {}\n")
    (tmp_path / "vmfleet.yaml").write_text(FLEET)
    result = vmfleet("show", "-o", "json", cwd=tmp_path, env={"VMFLEET_FILE": str(other)})
    assert names(result) == ["solo"]


def test_dash_f_wins_over_env_and_default_and_goes_anywhere(tmp_path: Path) -> None:
    (tmp_path / "vmfleet.yaml").write_text(FLEET)
    chosen = tmp_path / "one.yaml"
    chosen.write_text("vms:\n  one: {}\n")
    env = {"VMFLEET_FILE": str(tmp_path / "vmfleet.yaml")}
    assert names(vmfleet("-f", str(chosen), "show", "-o", "json", cwd=tmp_path, env=env)) == ["one"]
    assert names(vmfleet("show", "-o", "json", "-f", str(chosen), cwd=tmp_path, env=env)) == ["one"]


def test_positional_file_still_works_and_targets_follow(tmp_path: Path) -> None:
    (tmp_path / "vmfleet.yaml").write_text(FLEET)
    other = tmp_path / "other.yaml"
    other.write_text("vms:\n  solo: {}\n")
    assert names(vmfleet("show", "-o", "json", "other.yaml", cwd=tmp_path)) == ["solo"]
    # A name with no dot or slash is a target, so the default file is used.
    result = vmfleet("plan", "web", "--explain", "nosuchvm", cwd=tmp_path)
    assert "no fleet file" not in result.stderr
    assert "cannot read web" not in result.stderr


def test_no_file_anywhere_is_a_usage_error(tmp_path: Path) -> None:
    result = vmfleet("show", cwd=tmp_path)
    assert result.returncode == 2
    assert "no fleet file: give -f FILE, set VMFLEET_FILE" in result.stderr


def test_file_given_twice_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(FLEET)
    result = vmfleet("show", "a.yaml", "-f", "a.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "given twice" in result.stderr


def _split_seed_004(folder: Path) -> tuple[Path, Path]:
    """The seed-004 manifests split as Kubernetes users keep them: groups apart from VMs."""
    docs = list(yaml.safe_load_all((FIXTURES / "vm-groups.k8s.yaml").read_text()))
    groups = [d for d in docs if d["kind"] == "VirtualMachineGroup"]
    vms = [d for d in docs if d["kind"] != "VirtualMachineGroup"]
    folder.mkdir()
    group_file, vm_file = folder / "group.yaml", folder / "vms.yaml"
    group_file.write_text(yaml.safe_dump_all(groups))
    vm_file.write_text(yaml.safe_dump_all(vms))
    return group_file, vm_file


def test_seed_004_group_manifest_alone_fails_with_its_vms_it_loads(tmp_path: Path) -> None:
    group_file, vm_file = _split_seed_004(tmp_path / "manifests")
    alone = vmfleet("show", "-f", str(group_file), cwd=tmp_path)
    assert alone.returncode == 2
    assert "group.yaml:" in alone.stderr
    both = names(
        vmfleet("show", "-o", "json", "-f", str(group_file), "-f", str(vm_file), cwd=tmp_path)
    )
    folder = names(vmfleet("show", "-o", "json", "-f", "manifests/", cwd=tmp_path))
    assert sorted(folder) == sorted(both)
    assert "postgres-primary" in both


def test_native_files_merge_and_errors_name_the_right_file(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("fleet: split\nnetworks:\n  lab: {cidr: 10.9.0.0/24}\n")
    (tmp_path / "vms.yaml").write_text("vms:\n  web:\n    network: lab\n    memroy: 1G\n")
    result = vmfleet("validate", "-f", "base.yaml", "-f", "vms.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "vms.yaml:4:5: vms.web.memroy: unknown key 'memroy'" in result.stderr.replace("\n", "")


def test_a_name_defined_in_two_files_is_reported_at_the_second(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("vms:\n  web: {}\n")
    (tmp_path / "b.yaml").write_text("vms:\n  db: {}\n  web: {}\n")
    result = vmfleet("validate", "-f", ".", cwd=tmp_path)
    assert result.returncode == 2
    assert "b.yaml:3:3: vms.web: vms.web is also defined at a.yaml:2:3" in result.stderr


@pytest.mark.parametrize("example", ["three-tier", "replicas", "ha", "farm"])
def test_init_writes_a_starter_that_validates(tmp_path: Path, example: str) -> None:
    result = vmfleet("init", "--example", example, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "vmfleet.yaml").read_text()
    assert text.startswith("#")
    checked = vmfleet("validate", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    again = vmfleet("init", cwd=tmp_path)
    assert again.returncode == 2
    assert "exists" in again.stderr
