"""Shared helpers: write a fleet file and load it, as a user would."""

from __future__ import annotations

import gc
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


_PROBE_DOMAIN = (
    "<domain type='test'><name>vmfleet-isolation-probe</name><memory>1024</memory>"
    "<os><type>hvm</type></os></domain>"
)


def _test_driver_kept_open() -> bool:
    """Whether some connection to `test:///default` is still open in this process: the
    driver keeps what is defined on it only while one is. Defines a probe domain on a
    connection of its own, closes it and looks again; removes the probe if it stayed."""
    import libvirt

    conn = libvirt.open("test:///default")
    conn.defineXML(_PROBE_DOMAIN)
    conn.close()
    conn = libvirt.open("test:///default")
    try:
        if "vmfleet-isolation-probe" not in conn.listDefinedDomains():
            return False
        conn.lookupByName("vmfleet-isolation-probe").undefine()
        return True
    finally:
        conn.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """Each test starts on a pristine `test:///default`: a test that leaves a connection to it
    open (an unclosed FleetContext, say) would hand its domains to the tests after it on the
    same worker. Unreferenced connections are collected; one still held fails the test."""
    yield
    if not _test_driver_kept_open():
        return
    if isinstance(getattr(item, "funcargs", None), dict):
        item.funcargs.clear()  # pytest drops the fixture values only after this hook
    gc.collect()  # a context in a reference cycle closes its connections when collected
    if _test_driver_kept_open():
        raise AssertionError(
            f"{item.nodeid} left a connection to test:///default open: "
            "close the FleetContext or host it opened"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests first (in their own order), the fast ones after: pytest-xdist hands
    out each group and each ungrouped test as it is collected (groups by size first), so the
    long guest boots start at once and the quick tests fill the workers at the end."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


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
