"""Every YAML fleet file shown in README.md and docs/ validates as written.

Image sources that are relative paths are made as small qcow2 files beside the example, as a
reader following the docs would have them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vmfleet.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{doc.name}:{line}", match.group(1)))
    return found


def test_the_docs_show_at_least_one_fleet_file() -> None:
    assert any(name.startswith("README.md") for name, _ in _examples())


@pytest.mark.parametrize(("where", "text"), _examples(), ids=[n for n, _ in _examples()])
def test_doc_example_validates(where: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    data = yaml.safe_load(text)
    for image in (data.get("images") or {}).values():
        source = str(image.get("source", ""))
        if source and "://" not in source and not source.startswith("/"):
            target = tmp_path / source
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", str(target), "64M"], check=True
            )
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, f"{where}: {result.output}"
