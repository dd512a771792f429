"""The local state store: what libvirt cannot hold.

SQLite in `.vmfleet/state.db` beside the fleet file. It keeps:
- the operation journal: every step that creates something on a host is written *before*
  it runs (intent) and marked done after, so a run killed at any moment leaves a record of
  what may exist half-made, and the next run can finish or roll it back;
- leases: MACs, IPs and forwarded ports handed to VMs, so they stay stable;
- events: what vmfleet did and saw (`vmfleet events`, `status`), kept within a retention
  (count and age; `state.events` reads and prunes them).
- durations: how long operations took (`up`, readiness, snapshots, migrations), written by
  whichever process ran them (`state.durations`), for `serve`'s histograms.
- `tmp/` (0700): files with secrets while a run builds them, swept by the next locked run.
- cordons: hosts `drain` made unschedulable, until `uncordon`.
A fleet lock (fcntl on `.vmfleet/lock`) keeps two `up`/`down` runs from interleaving.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmfleet.errors import LockedError, StateError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT NOT NULL,
    host TEXT NOT NULL,
    vm TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('intent', 'done', 'undone', 'failed')),
    detail TEXT NOT NULL DEFAULT '{}',
    started REAL NOT NULL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS journal_open ON journal (status);
CREATE TABLE IF NOT EXISTS leases (
    kind TEXT NOT NULL CHECK (kind IN ('mac', 'ip', 'port')),
    scope TEXT NOT NULL,
    value TEXT NOT NULL,
    vm TEXT NOT NULL,
    slot INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    PRIMARY KEY (kind, scope, value)
);
CREATE UNIQUE INDEX IF NOT EXISTS leases_owner ON leases (kind, scope, vm, slot);
CREATE TABLE IF NOT EXISTS cordons (host TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    vm TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS durations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    operation TEXT NOT NULL,
    subject TEXT,
    seconds REAL NOT NULL
);
"""
# Tables are only ever added (CREATE ... IF NOT EXISTS, run at every writable open), so a
# state.db an older vmfleet made gains them when opened and SCHEMA_VERSION stays 1: an older
# vmfleet ignores a table it does not know. A read-only store over a state.db that lacks a
# newer table reads it as empty.
# Event retention: the newest EVENTS_KEEP events no older than EVENTS_MAX_AGE seconds, checked
# every PRUNE_EVERY writes; the newest event of each object of a RECORD_KINDS kind is kept
# whatever its age (`status` reads the last group-power record of every group).
EVENTS_KEEP = 10_000
EVENTS_MAX_AGE = 30 * 86400.0
PRUNE_EVERY = 200
RECORD_KINDS = ("group-power",)
EventRow = tuple[int, float, str | None, str, str]
# Duration retention: the newest DURATIONS_KEEP rows no older than EVENTS_MAX_AGE.
DURATIONS_KEEP = 10_000
DurationRow = tuple[int, float, str, str | None, float]  # id, at, operation, subject, seconds


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One step of work on a host: its target (a volume, a domain) and how far it got."""

    id: int
    run: str
    host: str
    vm: str
    kind: str
    target: str
    status: str
    detail: dict[str, Any]
    started: float


@dataclass(frozen=True, slots=True)
class Lease:
    kind: str
    scope: str
    value: str
    vm: str
    slot: int


class Store:
    """One fleet's state. Safe to share between the engine's worker threads."""

    def __init__(self, directory: Path, *, readonly: bool = False) -> None:
        """Open (and create) the store in `directory`; `readonly` creates and writes nothing.

        A read-only store over a folder without a store is empty; over an existing one it
        reads without locking files or leaving WAL files behind when no writer is active.
        """
        self.directory = directory
        self.readonly = readonly
        self._db_path = directory / "state.db"
        self._lock = threading.Lock()
        try:
            if readonly:
                self._db = _open_readonly(self._db_path)
                return
            directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self._db_path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as error:
            raise StateError(f"state store {self._db_path} is unusable: {error}") from None

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            self._db.commit()
        elif int(row[0]) > SCHEMA_VERSION:
            raise StateError(
                f"state store {self._db_path} is from a newer vmfleet (schema {row[0]})"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- temporary files ------------------------------------------------------------------

    def tmp_dir(self) -> Path:
        """`tmp/` in the state dir (mode 0700) for files that hold secrets while a run builds
        them (seed ISOs with SSH host keys and password hashes); never the system temp dir."""
        path = self.directory / "tmp"
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
        return path

    def sweep_tmp(self) -> list[Path]:
        """Remove what a killed run left in `tmp/`. Call only while holding the fleet lock:
        then no other run is writing there."""
        path = self.directory / "tmp"
        if not path.is_dir():
            return []
        removed = []
        for leftover in sorted(path.iterdir()):
            if leftover.is_file() or leftover.is_symlink():
                leftover.unlink(missing_ok=True)
                removed.append(leftover)
        return removed

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise StateError(f"state store {self._db_path} was opened read-only; not written")
        with self._lock:
            try:
                yield self._db
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise

    # --- journal ------------------------------------------------------------------------

    def intent(
        self,
        *,
        run: str,
        host: str,
        vm: str,
        kind: str,
        target: str,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Record that a step is about to create `target`; returns the entry id."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO journal (run, host, vm, kind, target, status, detail, started) "
                "VALUES (?, ?, ?, ?, ?, 'intent', ?, ?)",
                (run, host, vm, kind, target, json.dumps(detail or {}), time.time()),
            )
            return int(cursor.lastrowid or 0)

    def finish(self, entry: int, *, status: str = "done") -> None:
        """Close a journal entry as done, undone (rolled back) or failed."""
        with self._tx() as db:
            db.execute(
                "UPDATE journal SET status = ?, finished = ? WHERE id = ?",
                (status, time.time(), entry),
            )

    def note(self, entry: int, **detail: Any) -> None:
        """Add to an open entry's detail (a move's phase, which other processes read)."""
        with self._tx() as db:
            row = db.execute("SELECT detail FROM journal WHERE id = ?", (entry,)).fetchone()
            if row is None:
                raise StateError(f"no journal entry {entry}")
            merged = json.loads(row[0]) | detail
            db.execute("UPDATE journal SET detail = ? WHERE id = ?", (json.dumps(merged), entry))

    def open_entries(self) -> list[JournalEntry]:
        """Steps that began and never finished: what a killed run may have left behind."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, run, host, vm, kind, target, status, detail, started "
                "FROM journal WHERE status = 'intent' ORDER BY id"
            ).fetchall()
        return [
            JournalEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8])
            for r in rows
        ]

    # --- leases -------------------------------------------------------------------------

    def leases(self, kind: str | None = None) -> list[Lease]:
        with self._lock:
            query = "SELECT kind, scope, value, vm, slot FROM leases"
            rows = (
                self._db.execute(query + " WHERE kind = ? ORDER BY vm, slot", (kind,)).fetchall()
                if kind
                else self._db.execute(query + " ORDER BY kind, vm, slot").fetchall()
            )
        return [Lease(*row) for row in rows]

    def lease(self, *, kind: str, scope: str, value: str, vm: str, slot: int = 0) -> None:
        """Give `value` to (vm, slot); replaces that VM's earlier lease for the slot."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM leases WHERE kind = ? AND scope = ? AND vm = ? AND slot = ?",
                (kind, scope, vm, slot),
            )
            existing = db.execute(
                "SELECT vm FROM leases WHERE kind = ? AND scope = ? AND value = ?",
                (kind, scope, value),
            ).fetchone()
            if existing is not None:
                raise StateError(f"{kind} {value} in {scope} is already leased to {existing[0]}")
            db.execute(
                "INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?)",
                (kind, scope, value, vm, slot, time.time()),
            )

    def release(self, *, vm: str, kind: str | None = None, scope: str | None = None) -> int:
        """Drop a VM's leases (all kinds, or one; all scopes, or one); returns how many went."""
        query, args = "DELETE FROM leases WHERE vm = ?", [vm]
        if kind:
            query, args = query + " AND kind = ?", [*args, kind]
        if scope:
            query, args = query + " AND scope = ?", [*args, scope]
        with self._tx() as db:
            return db.execute(query, args).rowcount

    def last_hosts(self, kinds: dict[str, str]) -> dict[str, str]:
        """VM -> the host of its latest finished entry among `kinds` (kind -> "host", or the
        detail key naming the host), e.g. where a VM was last created or moved to."""
        with self._lock:
            rows = self._db.execute(
                "SELECT vm, kind, host, detail FROM journal WHERE status = 'done' "
                f"AND kind IN ({', '.join('?' * len(kinds))}) ORDER BY id",
                tuple(kinds),
            ).fetchall()
        out: dict[str, str] = {}
        for vm, kind, host, detail in rows:
            key = kinds[kind]
            out[vm] = host if key == "host" else str(json.loads(detail).get(key, host))
        return out

    # --- cordons ------------------------------------------------------------------------

    def cordon(self, host: str) -> None:
        """Mark a host unschedulable (kept until `uncordon`)."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO cordons VALUES (?, ?)", (host, time.time()))

    def uncordon(self, host: str) -> bool:
        """Make a host schedulable again; False when it was not cordoned."""
        with self._tx() as db:
            return db.execute("DELETE FROM cordons WHERE host = ?", (host,)).rowcount > 0

    def cordoned(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT host FROM cordons").fetchall()}

    # --- events -------------------------------------------------------------------------

    def event(self, *, kind: str, message: str, vm: str | None = None) -> None:
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO events (at, vm, kind, message) VALUES (?, ?, ?, ?)",
                (time.time(), vm, kind, message),
            )
        if (cursor.lastrowid or 0) % PRUNE_EVERY == 0:
            self.prune_events(keep=EVENTS_KEEP, older_than=time.time() - EVENTS_MAX_AGE)

    def event_rows(
        self,
        *,
        after: int = 0,
        since: float | None = None,
        objects: list[str] | None = None,
        kinds: list[str] | None = None,
        limit: int = 1000,
    ) -> list[EventRow]:
        """Events oldest first as (id, at, object, kind, message): those after id `after`, at
        or after `since`, about one of `objects`, of one of `kinds`; the newest `limit`."""
        where: list[str] = ["id > ?"]
        args: list[object] = [after]
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if objects:
            where.append(f"vm IN ({', '.join('?' * len(objects))})")
            args += objects
        if kinds:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args += kinds
        query = (
            f"SELECT id, at, vm, kind, message FROM events WHERE {' AND '.join(where)} "
            "ORDER BY id DESC LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in reversed(rows)]

    def prune_events(self, *, keep: int, older_than: float) -> int:
        """Apply the retention: drop events older than `older_than` (epoch seconds) and all
        but the newest `keep`, except the newest of each object of a RECORD_KINDS kind."""
        marks = ", ".join("?" * len(RECORD_KINDS))
        with self._tx() as db:
            cursor = db.execute(
                "DELETE FROM events WHERE (at < ? OR id <= (SELECT MAX(id) FROM events) - ?) "
                f"AND id NOT IN (SELECT MAX(id) FROM events WHERE kind IN ({marks}) "
                "GROUP BY vm, kind)",
                (older_than, keep, *RECORD_KINDS),
            )
            return cursor.rowcount

    def events(
        self, *, vm: str | None = None, limit: int = 100
    ) -> list[tuple[float, str | None, str, str]]:
        with self._lock:
            if vm:
                rows = self._db.execute(
                    "SELECT at, vm, kind, message FROM events WHERE vm = ? "
                    "ORDER BY id DESC LIMIT ?",
                    (vm, limit),
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT at, vm, kind, message FROM events ORDER BY id DESC LIMIT ?", (limit,)
                ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # --- durations ----------------------------------------------------------------------

    def duration(self, *, operation: str, seconds: float, subject: str | None = None) -> None:
        """Record that one operation (about `subject`, a VM or None) took `seconds`."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO durations (at, operation, subject, seconds) VALUES (?, ?, ?, ?)",
                (time.time(), operation, subject, seconds),
            )
            if (cursor.lastrowid or 0) % PRUNE_EVERY == 0:
                db.execute(
                    "DELETE FROM durations WHERE at < ? "
                    "OR id <= (SELECT MAX(id) FROM durations) - ?",
                    (time.time() - EVENTS_MAX_AGE, DURATIONS_KEEP),
                )

    def duration_rows(
        self, *, after: int = 0, since: float | None = None, limit: int = 1000
    ) -> list[DurationRow]:
        """Recorded durations oldest first: the first `limit` after id `after` (and at or
        after `since`), as (id, at, operation, subject, seconds)."""
        with self._lock:
            try:
                rows: list[DurationRow] = self._db.execute(
                    "SELECT id, at, operation, subject, seconds FROM durations "
                    "WHERE id > ? AND at >= ? ORDER BY id LIMIT ?",
                    (after, -1.0 if since is None else since, limit),
                ).fetchall()
            except sqlite3.OperationalError as error:
                if "no such table" in str(error):
                    return []  # a read-only look at a state.db from before the table
                raise StateError(f"state store {self._db_path}: {error}") from None
        return rows  # sqlite3 rows are these tuples already


def _open_readonly(path: Path) -> sqlite3.Connection:
    """A connection that never writes: an empty in-memory store when `path` does not exist,
    else `path` read-only. With no writer active (no WAL file), it is opened immutable, as
    sqlite would otherwise leave -wal and -shm files beside it."""
    if not path.exists():
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.executescript(_SCHEMA)
        return db
    live = Path(str(path) + "-wal").exists()
    mode = "mode=ro" if live else "immutable=1"
    return sqlite3.connect(f"{path.as_uri()}?{mode}", uri=True, check_same_thread=False)


@contextlib.contextmanager
def fleet_lock(directory: Path, *, wait: float = 0.0, what: str = "vmfleet") -> Iterator[None]:
    """Hold the fleet's exclusive lock; wait up to `wait` seconds, then LockedError.

    The lock file records the holder's pid and command so the message can say who holds it.
    The kernel drops the lock when the holder dies, even on kill -9.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text(errors="replace").strip() or "another process"
                    raise LockedError(
                        f"the fleet is busy: {holder} holds {path}; "
                        "wait for it to finish or pass --wait SECONDS"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({what})".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)
