"""Shared helpers: write a fleet file and load it, as a user would."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fleet_file(tmp_path: Path) -> Callable[[str], Path]:
    """Write dedented YAML to fleet.yaml in a temp dir and return its path."""

    def write(text: str, name: str = "fleet.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write
