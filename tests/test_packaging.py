"""Installing vmfleet: the wheel built from this tree carries the package data (starter files,
py.typed), declares every library it imports (cryptography too), keeps ansible-core in the
`e2e` extra, and ships under a license."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_built_wheel_has_data_and_declares_its_dependencies(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("vmfleet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(meta_name).decode())
    assert "vmfleet/py.typed" in names
    assert "vmfleet/cli/starters/three-tier.yaml" in names
    requires = meta.get_all("Requires-Dist") or []
    core = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("cryptography") for r in core)
    assert any(r.startswith("libvirt-python") for r in core)
    assert not any(r.startswith("ansible-core") for r in core)
    assert any(r.startswith("ansible-core") and 'extra == "e2e"' in r for r in requires)
    assert "e2e" in (meta.get_all("Provides-Extra") or [])


def test_license_and_changelog_exist() -> None:
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")
