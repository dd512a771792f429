"""Shared helpers: write a fleet file and load it, as a user would."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _kvm_probe_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests keep the KVM probe's answers in a cache of their own (one per test session),
    never in the user's ~/.cache; the vmfleet processes they start inherit it."""
    os.environ["VMFLEET_CACHE_DIR"] = str(tmp_path_factory.mktemp("vmfleet-cache"))


@pytest.fixture
def test_driver_daemon() -> Iterator[None]:
    """libvirt's `test:///default` forgets its domains, volumes and snapshots when its last
    connection in the process closes; a real libvirtd keeps them. Tests that open a fleet more
    than once hold one connection for their duration, as the daemon would."""
    import libvirt

    conn = libvirt.open("test:///default")
    try:
        yield
    finally:
        conn.close()


@pytest.fixture
def fleet_file(tmp_path: Path) -> Callable[[str], Path]:
    """Write dedented YAML to fleet.yaml in a temp dir and return its path."""

    def write(text: str, name: str = "fleet.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


def pytest_collection_finish(session: pytest.Session) -> None:
    """Tests of one `xdist_group` share daemons and clusters, so they must run on one worker;
    a pytest/pytest-xdist pair that silently drops the grouping fails the run here instead."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [
        i.nodeid
        for i in session.items
        if i.get_closest_marker("xdist_group") and "@" not in i.nodeid
    ]
    if lost:
        raise pytest.UsageError(
            f"pytest-xdist did not group {lost[0]} (and {len(lost) - 1} more): "
            "this pytest version breaks --dist loadgroup"
        )
