"""The store's SQLite file: its schema, and opening it for writing or for reading.

One row per kept trace in `traces` holds what the queries filter and aggregate on; the trace's
spans sit in `payloads` under the same id, as a zlib-compressed `ExportTraceServiceRequest`, so
scanning `traces` never drags span bytes through the page cache. Ids grow with insertion, which
makes "the oldest traces" an id range: retention deletes `id <= N` from both tables.

Indexes, each for a query shape:
- `traces_by_customer (customer, start_ns, trace_id, sample_rate, error, duration_ns, route)`:
  the per-customer list walks it backwards (newest first, keyset on start_ns + trace_id), and the
  per-customer summary reads every column it needs from it without touching the table.
- `traces_by_time (start_ns, trace_id)`: the list without a customer filter.
- `traces_by_id (trace_id)`, unique: trace lookup and late-span appends.
- For summaries over many traces, indexes that already hold a customer's traces in the order an
  aggregate needs, so it streams instead of sorting: `traces_by_customer_duration` (weighted
  percentiles), `traces_by_customer_route` (top routes), and `traces_with_errors`, partial, for
  the top errors (error traces only, so it costs little to keep).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

SCHEMA_VERSION = 1
"""`PRAGMA user_version` of files this code writes; a file with another version is refused."""

_TABLES = """
CREATE TABLE IF NOT EXISTS traces (
    id INTEGER PRIMARY KEY,
    trace_id BLOB NOT NULL,
    customer TEXT NOT NULL,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    route TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    error INTEGER NOT NULL,
    error_name TEXT NOT NULL,
    error_message TEXT NOT NULL,
    span_count INTEGER NOT NULL,
    sample_rate INTEGER NOT NULL,
    reason TEXT NOT NULL,
    send_reason TEXT NOT NULL,
    stored_ns INTEGER NOT NULL,
    payload_bytes INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS traces_by_id ON traces (trace_id);
CREATE INDEX IF NOT EXISTS traces_by_customer
    ON traces (customer, start_ns, trace_id, sample_rate, error, duration_ns, route);
CREATE INDEX IF NOT EXISTS traces_by_time ON traces (start_ns, trace_id);
CREATE INDEX IF NOT EXISTS traces_by_customer_duration
    ON traces (customer, duration_ns, start_ns, sample_rate);
CREATE INDEX IF NOT EXISTS traces_by_customer_route
    ON traces (customer, route, start_ns, sample_rate);
CREATE INDEX IF NOT EXISTS traces_with_errors
    ON traces (customer, error_name, error_message, start_ns, sample_rate) WHERE error = 1;
CREATE TABLE IF NOT EXISTS payloads (
    id INTEGER PRIMARY KEY,
    body BLOB NOT NULL
);
"""

BUSY_TIMEOUT_MS = 5000
"""How long a statement waits for a lock (a checkpoint, a second process) before failing."""


class StoreUnavailable(OSError):
    """The store file cannot be opened or is not a store this code can use.

    An OSError, like the other reasons a node cannot start (a port in use), so start-up reports
    it the same way.
    """


def open_for_writing(path: str | Path) -> sqlite3.Connection:
    """Open (creating it and its directory if need be) the store at `path` for the writer.

    The connection is in autocommit mode (`isolation_level=None`): the writer issues its own
    BEGIN/COMMIT so that one transaction holds exactly one batch. It may be handed to the writer
    thread after opening (`check_same_thread=False`); only one thread uses it at a time.
    """
    file = Path(path)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(file, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise StoreUnavailable(f"cannot open the store {file}: {exc}") from exc
    try:
        _configure_writer(conn)
        _create_or_check(conn, file)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreUnavailable(f"cannot use the store {file}: {exc}") from exc
    except StoreUnavailable:
        conn.close()
        raise
    return conn


def _create_or_check(conn: sqlite3.Connection, file: Path) -> None:
    """Check the file's schema version and create what is missing, in one write transaction.

    The workers of a node open the same file at the same moment: created outside a
    transaction, the tables were visible to a second worker before the version that marks
    them as ours, and it refused the file (version 0) and failed the node's start.
    """
    conn.execute("BEGIN IMMEDIATE")  # one connection at a time, the others wait (busy_timeout)
    try:
        _check_version(conn, file)
        for statement in _TABLES.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _configure_writer(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = _switch_to_wal(conn)
    if mode.lower() != "wal":
        raise sqlite3.OperationalError(f"the file cannot use WAL journaling (mode {mode})")
    # Why synchronous=NORMAL is enough: in WAL mode a commit appends the batch to the -wal file
    # with write(); once write() returns, the bytes are in the kernel's page cache and survive
    # the process being killed (kill -9, OOM killer, a crash). NORMAL skips only the fsync per
    # commit, so what it risks is the last few commits on a power loss or kernel crash, never
    # the file's integrity: every WAL frame carries a checksum and recovery replays only whole,
    # committed transactions. FULL would fsync every batch for protection we do not need here.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -32768")  # KiB: 32 MiB of page cache for the writer
    conn.execute("PRAGMA temp_store = MEMORY")
    # After a checkpoint empties the WAL, truncate it back to this size rather than keep the
    # high-water mark on disk.
    conn.execute("PRAGMA journal_size_limit = 67108864")


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """`PRAGMA journal_mode = WAL`, retried while another process holds the lock it needs.

    Switching a new file to WAL takes an exclusive lock, and SQLite answers SQLITE_BUSY at once
    (the busy timeout does not apply) while another connection is doing the same: the workers of
    a node open a new store together.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _check_version(conn: sqlite3.Connection, file: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    if has_tables and version != SCHEMA_VERSION:
        raise StoreUnavailable(
            f"the store {file} has schema version {version}, this refinery_py uses "
            f"{SCHEMA_VERSION}: move the file aside (or delete it) to start a new store"
        )


def open_for_reading(path: str | Path) -> sqlite3.Connection:
    """Open an existing store for queries: never creates a file, never writes.

    WAL lets readers run beside the writer; each query sees the last committed batch.
    """
    file = Path(path)
    if not file.exists():
        raise StoreUnavailable(f"there is no store at {file}")
    try:
        conn = sqlite3.connect(
            f"{file.resolve().as_uri()}?mode=rw", uri=True, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot open the store {file}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only = 1")
        conn.execute("PRAGMA cache_size = -16384")  # KiB
        _check_version(conn, file)
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            raise StoreUnavailable(f"{file} is not a refinery_py store (it has no tables)")
    except sqlite3.Error as exc:
        conn.close()
        raise StoreUnavailable(f"cannot read the store {file}: {exc}") from exc
    except StoreUnavailable:
        conn.close()
        raise
    return conn


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database holding data: its pages minus the free ones awaiting reuse.

    Deleted rows free their pages; new rows reuse them, so keeping this under `store.max_size`
    keeps the file itself near that size (plus the WAL, bounded by `journal_size_limit`).
    """
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * page_size)
