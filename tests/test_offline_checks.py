"""What `vmfleet validate` checks without a host, beyond the file itself: user-data templates
render (an undefined variable is an error) into valid cloud-config, `{env:}` and `{file:}`
secrets resolve, local images exist, and every user-data or secret file stays inside the
fleet's folder (symlinks resolved) unless a `trusted_paths` entry allows it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from vmfleet.engine import checks
from vmfleet.errors import Problem, SpecError
from vmfleet.spec.load import load

HEAD = "images:\n  deb: {source: disk.qcow2}\nvms:\n  web:\n    image: deb\n"


@pytest.fixture
def fleet(fleet_file: Callable[[str], Path], tmp_path: Path) -> Callable[[str], Path]:
    """A fleet file beside an (empty) image `disk.qcow2`, with `extra` under vms.web."""
    (tmp_path / "disk.qcow2").touch()

    def write(extra: str) -> Path:
        return fleet_file(HEAD + extra)

    return write


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(SpecError) as caught:
        checks.offline(load(path))
    return caught.value.problems


def test_a_sound_fleet_with_a_template_and_secrets_passes(
    fleet: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "user-data.j2").write_text("#cloud-config\nbootcmd: [echo {{ name }}]\n")
    (tmp_path / "pw").write_text("secret\n")
    monkeypatch.setenv("VMFLEET_TEST_PW", "x")
    path = fleet(
        "    replicas: 2\n    cloud_init:\n      user_data: user-data.j2\n"
        "      password: {file: pw}\n"
        "    overrides:\n      1: {cloud_init: {password: {env: VMFLEET_TEST_PW}}}\n"
    )
    checks.offline(load(path))


def test_an_undefined_template_variable_is_an_error_at_its_template_line(
    fleet: Callable[[str], Path], tmp_path: Path
) -> None:
    template = tmp_path / "user-data.j2"
    template.write_text("#cloud-config\nbootcmd:\n  - echo {{ nmae }}\n")
    (problem,) = problems_of(fleet("    cloud_init: {user_data: user-data.j2}\n"))
    assert "'nmae' is undefined" in problem.message
    assert problem.position is not None
    assert (problem.position.file, problem.position.line) == (str(template), 3)


@pytest.mark.parametrize(
    ("text", "mode", "words"),
    [
        pytest.param("- a\n- b\n", "merge", "must be a YAML mapping", id="a list, not a mapping"),
        pytest.param("a: [\n", "merge", "not YAML", id="not YAML"),
        pytest.param("packages: [x]\n", "replace", "needs a header", id="replace without header"),
    ],
)
def test_rendered_user_data_must_be_cloud_config(
    fleet: Callable[[str], Path], tmp_path: Path, text: str, mode: str, words: str
) -> None:
    (tmp_path / "ud").write_text(text)
    path = fleet(f"    cloud_init: {{user_data: ud, user_data_mode: {mode}}}\n")
    (problem,) = problems_of(path)
    assert words in problem.message


@pytest.mark.parametrize(
    ("cloud_init", "field", "words"),
    [
        pytest.param(
            "{password: {env: VMFLEET_SURELY_UNSET}}",
            "vms.web.cloud_init.password",
            "VMFLEET_SURELY_UNSET is not set",
            id="env secret unset",
        ),
        pytest.param(
            "{password: {file: nope.txt}}",
            "vms.web.cloud_init.password",
            "does not exist",
            id="secret file missing",
        ),
        pytest.param(
            "{password: {file: ../../../../../../etc/shadow}}",
            "vms.web.cloud_init.password",
            "outside the fleet file's folder",
            id="secret file climbing out",
        ),
        pytest.param(
            "{user_data: /etc/passwd}",
            "vms.web.cloud_init.user_data",
            "outside the fleet file's folder",
            id="absolute user-data outside",
        ),
        pytest.param(
            "{user_data: link}",
            "vms.web.cloud_init.user_data",
            "outside the fleet file's folder",
            id="symlink pointing outside",
        ),
        pytest.param(
            "{user_data: missing.j2}",
            "vms.web.cloud_init.user_data",
            "does not exist",
            id="user-data missing",
        ),
        pytest.param(
            "{user_data: pw, password: {file: pw}}",
            "vms.web.cloud_init.user_data",
            "never sent as user-data",
            id="secret used as user-data",
        ),
    ],
)
def test_file_and_env_references_are_positioned_errors(
    fleet: Callable[[str], Path], tmp_path: Path, cloud_init: str, field: str, words: str
) -> None:
    (tmp_path / "link").symlink_to("/etc/hostname")
    (tmp_path / "pw").write_text("hunter2\n")
    path = fleet(f"    cloud_init: {cloud_init}\n")
    matching = [p for p in problems_of(path) if p.field == field]
    assert matching and words in matching[0].message, matching
    assert matching[0].position is not None
    assert (matching[0].position.file, matching[0].position.line) == (str(path), 6)


def test_trusted_paths_let_a_file_outside_the_fleet_folder_in(
    fleet_file: Callable[[str], Path], tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "ud.j2").write_text("#cloud-config\n{}\n")
    fleet_dir = tmp_path / "fleet"
    fleet_dir.mkdir()
    (fleet_dir / "disk.qcow2").touch()
    text = HEAD + "    cloud_init: {user_data: ../shared/ud.j2}\n"
    path = fleet_dir / "fleet.yaml"
    path.write_text(text)
    assert "outside" in problems_of(path)[0].message
    path.write_text("trusted_paths: [../shared]\n" + text)
    checks.offline(load(path))


def test_a_missing_local_image_is_an_error_at_its_source(fleet_file: Callable[[str], Path]) -> None:
    path = fleet_file(HEAD)
    (problem,) = problems_of(path)
    assert problem.field == "images.deb.source"
    assert "does not exist" in problem.message
    assert problem.position is not None and problem.position.line == 2


def test_validate_exits_2_on_an_unrenderable_template(
    fleet: Callable[[str], Path], tmp_path: Path
) -> None:
    (tmp_path / "ud").write_text("#cloud-config\nfoo: {{ undefined_thing }}\n")
    path = fleet("    cloud_init: {user_data: ud}\n")
    result = subprocess.run(
        [sys.executable, "-m", "vmfleet.cli.main", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{tmp_path / 'ud'}:2:" in result.stderr
