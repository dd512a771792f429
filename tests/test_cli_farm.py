"""`vmfleet farm` as a user runs it: status of a fresh farm as JSON, convert of seed 003,
and bad input (no farm section, an unknown cell) as exit 2 with a message."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests import e2e_support

FIXTURES = Path(__file__).parent / "fixtures"
FARM = """\
fleet: clifarm
hosts: {local: {uri: "test:///default", domain_type: qemu, pool: default-pool}}
images:
  base: {source: /nonexistent/base.qcow2}
  base-arm: {source: /nonexistent/base-arm.qcow2, arch: aarch64}
farm:
  project: {id: cli, revision: 7}
  platforms: {deb: {image: base, images: {arm64: base-arm}}}
  matrix: {targets: [amd64, arm64], platforms: [deb]}
"""


def vmfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return e2e_support.vmfleet(*args, inherit=False)


def test_status_lists_every_cell_of_a_farm_not_run_yet(tmp_path: Path) -> None:
    path = tmp_path / "farm.yaml"
    path.write_text(FARM)
    result = vmfleet("farm", "status", "-o", "json", "--state", str(tmp_path / "s"), str(path))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["cell"], r["vm"], r["state"]) for r in rows] == [
        ("deb/amd64", "cli-deb-amd64", "absent"),
        ("deb/arm64", "cli-deb-arm64", "absent"),
    ]


def test_unknown_cell_and_missing_farm_are_usage_errors(tmp_path: Path) -> None:
    path = tmp_path / "farm.yaml"
    path.write_text(FARM)
    state = str(tmp_path / "s")
    result = vmfleet("farm", "run", "--only", "deb/ppc64", "--state", state, str(path))
    assert result.returncode == 2
    assert "deb/ppc64 is not a cell of the matrix" in result.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text("vms: {}\n")
    result = vmfleet("farm", "status", "--state", state, str(plain))
    assert result.returncode == 2 and "has no farm: section" in result.stderr


def test_convert_prints_seed_003_as_a_native_farm() -> None:
    result = vmfleet("convert", str(FIXTURES / "ansible-farm.yml"))
    assert result.returncode == 0, result.stderr
    native = result.stdout
    assert "farm:" in native and "permutations" not in native
    assert "qemu+ssh://pi@192.168.1.200/session" in native


def test_an_imported_farm_without_images_says_what_to_set(tmp_path: Path) -> None:
    result = vmfleet("farm", "status", "--state", str(tmp_path), str(FIXTURES / "ansible-farm.yml"))
    assert result.returncode == 2
    assert "Arch-Linux, debian_12 have no image" in result.stderr
