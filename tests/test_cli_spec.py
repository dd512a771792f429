"""The spec commands as a user runs them: `vmfleet validate|show|convert`, their output
formats and exit codes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml
from tests import e2e_support

FIXTURES = Path(__file__).parent / "fixtures"


def vmfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return e2e_support.vmfleet(*args, inherit=False)


def test_validate_summarises_templates_and_vms() -> None:
    result = vmfleet("validate", str(FIXTURES / "replicas-usecases.yml"))
    assert result.returncode == 0, result.stderr
    assert "2 templates give 8 VMs" in result.stdout
    assert "dev-node-0" in result.stdout


def test_validate_json_is_machine_readable() -> None:
    result = vmfleet("validate", "-o", "json", str(FIXTURES / "replicas-inventory.yml"))
    summary = json.loads(result.stdout)
    assert (summary["templates"], summary["vms"], summary["valid"]) == (1, 3, True)
    assert summary["format"] == "ansible-inventory"


def test_bad_file_exits_2_with_every_problem(fleet_file: Callable[[str], Path]) -> None:
    path = fleet_file("vms:\n  web:\n    replicas: 0\n    memroy: 1G\n")
    result = vmfleet("validate", str(path))
    assert result.returncode == 2
    assert f"{path}:3:5: vms.web.replicas" in result.stderr
    assert f"{path}:4:5: vms.web.memroy: unknown key 'memroy' (did you mean 'memory'?)" in (
        result.stderr.replace("\n", "")
    )
    assert result.stdout == ""


def test_missing_file_exits_2() -> None:
    result = vmfleet("validate", "/nonexistent/fleet.yaml")
    assert result.returncode == 2
    assert "cannot read /nonexistent/fleet.yaml" in result.stderr


def test_show_lists_expanded_instances_in_three_formats() -> None:
    path = str(FIXTURES / "replicas-inventory.yml")
    table = vmfleet("show", path)
    assert table.returncode == 0
    for word in ("ubuntu-dev-2", "52:54:00:12:34:12", "192.168.88.12", "4GiB", "40GiB"):
        assert word in table.stdout
    rows = json.loads(vmfleet("show", "-o", "json", path).stdout)
    assert [r["name"] for r in rows] == ["ubuntu-dev-0", "ubuntu-dev-1", "ubuntu-dev-2"]
    assert rows[1]["ip"] == ["192.168.88.11"] and rows[1]["vcpus"] == 2
    assert yaml.safe_load(vmfleet("show", "-o", "yaml", path).stdout) == rows


def test_convert_prints_native_yaml_that_validates(tmp_path: Path) -> None:
    result = vmfleet("convert", str(FIXTURES / "vm-groups.k8s.yaml"))
    assert result.returncode == 0
    native = tmp_path / "native.yaml"
    native.write_text(result.stdout)
    (tmp_path / "images").mkdir()  # validate wants the local images the manifests name
    for image in ("ubuntu-22.04", "nginx-image", "redis-image"):
        (tmp_path / "images" / f"{image}.qcow2").touch()
    again = vmfleet("validate", "-o", "json", str(native))
    assert json.loads(again.stdout)["format"] == "native"
    assert json.loads(again.stdout)["vms"] == 6


def test_unknown_command_and_help() -> None:
    assert vmfleet("frobnicate").returncode == 2
    helptext = vmfleet("--help").stdout
    for command in ("validate", "show", "convert"):
        assert command in helptext
