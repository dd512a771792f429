"""Seed 003's platform task files (`setup_vm_/platforms/debian.yaml`, `debian_12.yaml`),
given beside its inventory, import as images per cell and platform settings; their Jinja2
is evaluated in a sandbox, what cannot be evaluated is a warning with its position, and
broken files are errors with positions (exit 2, no traceback)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from tests.e2e_support import vmfleet

from vmfleet import Fleet
from vmfleet.errors import SpecError

FIXTURES = Path(__file__).parent / "fixtures"
URL = "https://cdimage.debian.org/cdimage/cloud/bookworm/daily/20230403-1339/"
PASSWORD = "virtualsquare"  # the seed's root and user password: never shown


@pytest.fixture
def farm(tmp_path: Path) -> Path:
    """The seed's inventory and its two platform files, as the seed lays them out."""
    shutil.copy(FIXTURES / "ansible-farm.yml", tmp_path / "inventory.yml")
    shutil.copytree(FIXTURES / "ansible-farm-platforms", tmp_path / "platforms")
    return tmp_path


def _run(farm: Path, command: str = "validate") -> tuple[int, str, str]:
    result = vmfleet(command, "-f", "inventory.yml", "-f", "platforms", cwd=farm, timeout=120)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout, " ".join(result.stderr.split())  # unwrapped


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_seed_platform_files_validate_and_name_an_image_per_target(farm: Path) -> None:
    code, _out, err = _run(farm)
    assert code == 0, err
    assert "platform 'debian_12' is defined in ansible_farm's task files" not in err
    assert "platform 'Arch-Linux' is defined in ansible_farm's task files" in err
    # The seed's own run-time values are warned about where they are written, not guessed.
    assert re.search(r"platforms/debian\.yaml:17:9: cannot evaluate: the 'random' filter", err)
    assert re.search(r"platforms/debian\.yaml:64:17: cannot evaluate: the 'random_mac'", err)
    assert re.search(r"platforms/debian\.yaml:61:15: net: farm\.platforms has no network", err)
    assert PASSWORD not in err


def test_convert_prints_images_with_rendered_urls_and_prepare(farm: Path) -> None:
    code, out, err = _run(farm, "convert")
    assert code == 0, err
    assert PASSWORD not in out and PASSWORD not in err
    native = yaml.safe_load(out)
    images = native["images"]
    assert sorted(images) == ["debian-12-amd64", "debian-12-arm64", "debian-12-ppc64"]
    arm64 = images["debian-12-arm64"]
    assert arm64 == {
        "source": URL + "debian-12-nocloud-arm64-daily-20230403-1339.qcow2",
        "checksums": URL + "SHA512SUMS",
        "format": "qcow2",
        "prepare": {"format": "qcow2", "size": "10G", "setup": {"user": "user"}},
        "arch": "aarch64",
    }
    # debian_arch_names maps the target ppc64 to Debian's ppc64el.
    assert images["debian-12-ppc64"]["source"].endswith("nocloud-ppc64el-daily-20230403-1339.qcow2")
    assert images["debian-12-ppc64"]["arch"] == "ppc64le"
    platform = native["farm"]["platforms"]["debian_12"]
    assert platform == {
        "vcpus": 2,
        "memory": 1536,
        "user": "user",
        "images": {t: f"debian-12-{t}" for t in ("amd64", "arm64", "ppc64")},
    }
    assert native["ssh"]["host_keys"] == "accept-new"
    assert "SHA512SUMS at the first pull and pinned" in err


def test_the_python_api_opens_inventory_and_platform_files(farm: Path) -> None:
    path = os.pathsep.join([str(farm / "inventory.yml"), str(farm / "platforms")])
    fleet = Fleet.open(path, state=farm / "state")
    spec = fleet.loaded.spec
    assert fleet.loaded.format == "ansible-farm"
    assert fleet.loaded.path == (farm / "inventory.yml").resolve()
    image = spec.images["debian-12-amd64"]
    assert image.arch == "x86_64" and image.prepare is not None
    assert image.prepare.size == 10 * 1024**3
    assert spec.farm is not None and spec.farm.platforms["debian_12"].images["arm64"] == (
        "debian-12-arm64"
    )


def test_an_image_value_keeps_the_position_it_was_written_at(farm: Path) -> None:
    _edit(farm / "platforms" / "debian_12.yaml", "size: 10G", "size: 99999999T")
    code, _out, err = _run(farm)
    assert code == 2
    assert re.search(r"platforms/debian_12\.yaml:16:7: images\.debian-12-amd64\.prepare", err)
    assert "larger than 64TiB" in err


def test_attribute_access_the_sandbox_refuses_is_a_warning(farm: Path) -> None:
    _edit(
        farm / "platforms" / "debian.yaml",
        'uri_base: "https://',
        "uri_base: \"{{ ''.__class__.__mro__[1].__subclasses__() }}https://",
    )
    code, out, err = _run(farm, "convert")
    assert code == 0, err
    assert re.search(r"debian\.yaml:\d+:\d+: cannot evaluate: template: .*unsafe", err)
    assert "images" not in yaml.safe_load(out)  # no URL, no image: not a guess
    assert "platform 'debian_12' is defined in ansible_farm's task files" in err


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ 'x' * 100000000 }}", "'*' would build more than"),
        ("{{ 9 ** 9 ** 9 }}", "'**' operator is not evaluated"),
        ("{{ lipsum(1000000) }}", "lipsum"),
        ("{{ version_name | to_nice_yaml }}", "No filter named 'to_nice_yaml'"),
    ],
)
def test_templates_that_would_run_away_are_not_evaluated(
    farm: Path, template: str, reason: str
) -> None:
    _edit(farm / "platforms" / "debian.yaml", "period: daily", f'period: "{template}"')
    code, _out, err = _run(farm)
    assert code == 0, err
    assert re.search(r"debian\.yaml:6:5: cannot evaluate: .*" + re.escape(reason), err), err


def test_a_variable_that_refers_to_itself_is_a_warning(farm: Path) -> None:
    _edit(farm / "platforms" / "debian.yaml", "period: daily", 'period: "{{ period }}"')
    code, _out, err = _run(farm)
    assert code == 0, err
    assert "cannot evaluate: 'period' refers to itself" in err


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "debian.yaml",
            "- name: Defining",
            "- import_tasks: debian_12.yaml\n- name: Defining",
            r"debian\.yaml:1:3: \[0\]\.import_tasks: import_tasks cycle: "
            r"debian_12\.yaml -> debian\.yaml -> debian_12",
        ),
        (
            "debian_12.yaml",
            "import_tasks: debian.yaml",
            "import_tasks: ../inventory.yml",
            r"debian_12\.yaml:2:7: .*import_tasks '\.\./inventory\.yml' is outside the folder",
        ),
        (
            "debian_12.yaml",
            "import_tasks: debian.yaml",
            "import_tasks: debian_11.yaml",
            r"debian_12\.yaml:2:7: .*import_tasks 'debian_11\.yaml': no such file",
        ),
        (
            "debian.yaml",
            "callbacks/sources/copy.yaml",
            "callbacks/sources/rsync.yaml",
            r"platforms/debian\.yaml:46:\d+: unknown callback 'callbacks/sources/rsync\.yaml'",
        ),
        (
            "debian.yaml",
            "period: daily",
            "period: [daily",
            r"debian\.yaml:\d+:\d+: YAML syntax error",
        ),
    ],
)
def test_broken_platform_files_are_errors_with_positions(
    farm: Path, file: str, old: str, new: str, message: str
) -> None:
    _edit(farm / "platforms" / file, old, new)
    code, _out, err = _run(farm)
    assert code == 2
    assert re.search(message, err), err


def test_platform_files_need_the_inventory(farm: Path) -> None:
    result = vmfleet("validate", "-f", "platforms", cwd=farm, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "exactly one ansible_farm inventory" in result.stderr


def test_a_platform_file_outside_the_matrix_is_a_warning(farm: Path) -> None:
    shutil.copy(farm / "platforms" / "debian_12.yaml", farm / "platforms" / "debian_13.yaml")
    code, _out, err = _run(farm)
    assert code == 0, err
    assert "debian_13.yaml:1:1: platform 'debian_13' is not in the matrix; ignored" in err
    assert "platform 'debian' is not in the matrix" not in err  # imported by the others


def test_python_api_reports_errors_as_spec_errors(farm: Path) -> None:
    _edit(
        farm / "platforms" / "debian_12.yaml", "import_tasks: debian.yaml", "import_tasks: x.yaml"
    )
    path = os.pathsep.join([str(farm / "inventory.yml"), str(farm / "platforms")])
    with pytest.raises(SpecError, match="no such file"):
        Fleet.open(path, state=farm / "state")


def test_the_specific_file_alone_reads_the_generic_one_it_imports(farm: Path) -> None:
    result = vmfleet(
        "convert", "-f", "inventory.yml", "-f", "platforms/debian_12.yaml", cwd=farm, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert sorted(yaml.safe_load(result.stdout)["images"]) == [
        "debian-12-amd64",
        "debian-12-arm64",
        "debian-12-ppc64",
    ]


def test_variables_that_double_each_other_stay_bounded(farm: Path) -> None:
    bomb = "".join(f'    v{i}: "{{{{ v{i + 1} }}}}{{{{ v{i + 1} }}}}"\n' for i in range(40))
    _edit(
        farm / "platforms" / "debian.yaml",
        "    period: daily\n",
        f'    period: "{{{{ v0 }}}}"\n{bomb}    v40: "xxxxxxxxxxxxxxxx"\n',
    )
    code, _out, err = _run(farm)
    assert code == 0, err
    assert "cannot evaluate: the value is longer than 65536" in err
