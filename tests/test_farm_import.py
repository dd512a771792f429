"""Seed 003's ansible_farm inventory imports unchanged into a native `farm:` section, and
`farm:` itself is checked: unknown targets and platforms are errors with positions."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.validate import run_validate

from vmfleet.errors import SpecError
from vmfleet.spec.farm import BUILTIN_TARGETS
from vmfleet.spec.load import load, load_text, parse

FIXTURES = Path(__file__).parent / "fixtures"


def test_seed_003_inventory_is_detected_and_keeps_its_matrix() -> None:
    loaded = load(FIXTURES / "ansible-farm.yml")
    assert loaded.format == "ansible-farm"
    farm = loaded.spec.farm
    assert farm is not None
    assert farm.matrix.targets == ["amd64", "arm64", "ppc64"]
    assert farm.matrix.platforms == ["debian_12"]
    assert [(c.platform, c.target) for c in farm.matrix.cells] == [("Arch-Linux", "amd64")]
    assert farm.project.id == "example_04" and farm.project.revision == "0"
    assert farm.phases.allowed[0] == "startup" and len(farm.phases.allowed) == 10


def test_seed_003_group_vars_become_platform_and_target_settings() -> None:
    farm = load(FIXTURES / "ansible-farm.yml").spec.farm
    assert farm is not None
    assert farm.platforms["Arch-Linux"].ready == "port"
    arm64 = farm.target("arm64")
    assert arm64 is not None and arm64.snapshot_type == "external"
    assert arm64.machine == "virt" and arm64.arch == "aarch64"
    assert farm.target("ppc64") == BUILTIN_TARGETS["ppc64"]


def test_seed_003_hypervisors_become_ssh_hosts() -> None:
    loaded = load(FIXTURES / "ansible-farm.yml")
    uris = {name: host.uri for name, host in loaded.spec.hosts.items()}
    assert uris == {
        "notebook-amd64": "qemu+ssh://user@nb-jacopo.lan/session",
        "rpi-4-arm64": "qemu+ssh://pi@192.168.1.200/session",
    }
    assert loaded.spec.ssh.private_key == "~/.ssh/id_ssh_rsa_vm"


def test_seed_003_warns_with_positions_about_what_it_cannot_know() -> None:
    loaded = load(FIXTURES / "ansible-farm.yml")
    warnings = [str(w) for w in loaded.document.warnings]
    assert any("platform 'debian_12'" in w and "image" in w for w in warnings)
    assert any(":20:9: 'notebook_amd64' is not a valid name" in w for w in warnings)


def test_seed_003_validates_and_unknown_keys_are_warnings(tmp_path: Path) -> None:
    text = (FIXTURES / "ansible-farm.yml").read_text()
    path = tmp_path / "inventory.yml"
    path.write_text(
        text.replace("    arm64:\n      vars:\n", "    arm64:\n      vars:\n        colour: red\n")
    )
    code, stderr = run_validate(path)
    assert code == 0, stderr
    assert "'colour' has no use in vmfleet; ignored" in stderr


def test_converted_form_loads_as_native(tmp_path: Path) -> None:
    import yaml

    document, _fmt = load_text((FIXTURES / "ansible-farm.yml").read_text(), file="inv.yml")
    native, fmt = load_text(yaml.safe_dump(document.data), file="native.yml")
    assert fmt == "native"
    assert parse(native).farm == parse(document).farm


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ("{targets: [riscv], platforms: [deb]}", "unknown target(s) riscv"),
        ("{targets: [amd64], platforms: [nope]}", "platform(s) nope not defined"),
        ("{list: [{platform: 'bad name', target: amd64}]}", "not a valid platform or target"),
    ],
)
def test_matrix_names_must_be_known(matrix: str, message: str) -> None:
    text = f"farm:\n  project: {{id: p}}\n  platforms: {{deb: {{}}}}\n  matrix: {matrix}\n"
    document, _ = load_text(text, file="f.yml")
    with pytest.raises(SpecError) as info:
        parse(document)
    assert message in str(info.value)
    assert "f.yml:" in str(info.value)


@pytest.mark.parametrize(
    ("platform", "message"),
    [
        ("{image: nope}", "unknown image 'nope'; known: x86"),
        ("{image: x86}", "image 'x86' is x86_64, target 'arm64' runs aarch64"),
        ("{image: x86, images: {arm64: nope}}", "unknown image 'nope'"),
    ],
)
def test_a_cells_image_must_exist_and_match_its_arch(platform: str, message: str) -> None:
    text = (
        "images: {x86: {source: /srv/x86.qcow2}}\n"
        f"farm:\n  project: {{id: p}}\n  platforms: {{deb: {platform}}}\n"
        "  matrix: {targets: [amd64, arm64], platforms: [deb]}\n"
    )
    document, _ = load_text(text, file="f.yml")
    with pytest.raises(SpecError) as info:
        parse(document)
    assert message in str(info.value)
    assert "f.yml:4:" in str(info.value)
