"""The state store: journal entries survive a crash, leases stay unique, the fleet lock
keeps two runs apart and is released when its holder is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmfleet.errors import LockedError, StateError
from vmfleet.state.store import Store, fleet_lock


def test_open_entries_survive_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path)
    done = store.intent(
        run="r1", host="local", vm="web-0", kind="volume", target="vmf-f--web-0--root"
    )
    store.finish(done)
    store.intent(run="r1", host="local", vm="web-1", kind="volume", target="vmf-f--web-1--root")
    store.close()
    again = Store(tmp_path)
    (entry,) = again.open_entries()
    assert (entry.vm, entry.kind, entry.target, entry.status) == (
        "web-1",
        "volume",
        "vmf-f--web-1--root",
        "intent",
    )


def test_leases_are_unique_per_scope(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.lease(kind="ip", scope="lab", value="192.168.88.10", vm="web-0")
    store.lease(kind="ip", scope="other", value="192.168.88.10", vm="db")
    with pytest.raises(StateError, match="already leased to web-0"):
        store.lease(kind="ip", scope="lab", value="192.168.88.10", vm="web-1")
    store.lease(kind="ip", scope="lab", value="192.168.88.11", vm="web-0")  # moves web-0
    assert [(le.vm, le.value) for le in store.leases("ip") if le.scope == "lab"] == [
        ("web-0", "192.168.88.11")
    ]
    assert store.release(vm="web-0") == 1


def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    with (
        fleet_lock(tmp_path, what="up fleet.yaml"),
        pytest.raises(LockedError, match=r"pid \d+ \(up fleet.yaml\)"),
        fleet_lock(tmp_path, wait=0.3),
    ):
        pass


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from vmfleet.state.store import fleet_lock\n"
        "with fleet_lock(Path(sys.argv[1])):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        with pytest.raises(LockedError), fleet_lock(tmp_path):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        start = time.monotonic()
        with fleet_lock(tmp_path, wait=5):
            assert time.monotonic() - start < 5
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_corrupt_store_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="unusable"):
        Store(tmp_path)


def test_a_note_adds_to_an_open_entry_and_a_read_only_store_reads_it(tmp_path: Path) -> None:
    store = Store(tmp_path)
    entry = store.intent(
        run="r", host="a", vm="m", kind="migration", target="m", detail={"to": "b"}
    )
    store.note(entry, phase="migrate")
    reader = Store(tmp_path, readonly=True)  # another process while the writer is open
    (seen,) = reader.open_entries()
    assert seen.detail == {"to": "b", "phase": "migrate"}
    with pytest.raises(StateError, match="read-only"):
        reader.note(entry, phase="x")
    with pytest.raises(StateError, match="no journal entry"):
        store.note(entry + 1, phase="x")
