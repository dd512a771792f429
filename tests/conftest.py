"""Shared helpers: write a fleet file and load it, as a user would."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _kvm_probe_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests keep the KVM probe's answers in a cache of their own (one per test session),
    never in the user's ~/.cache; the vmfleet processes they start inherit it."""
    os.environ["VMFLEET_CACHE_DIR"] = str(tmp_path_factory.mktemp("vmfleet-cache"))


@pytest.fixture
def fleet_file(tmp_path: Path) -> Callable[[str], Path]:
    """Write dedented YAML to fleet.yaml in a temp dir and return its path."""

    def write(text: str, name: str = "fleet.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write
