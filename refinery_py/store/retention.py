"""Retention: delete the oldest traces by age (`store.retention`) and by size (`store.max_size`).

Row ids grow with insertion, so the oldest traces are always the lowest ids and every deletion
is one id range (`id <= N`) in both tables. Deletions run in chunks, each its own short
transaction, so a large backlog (a store reopened after a day off) never holds the writer for
long; whatever a pass leaves is deleted by the next one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from refinery_py.store.schema import used_bytes

CHUNK_ROWS = 2000
"""Rows examined and deleted per transaction."""

ROW_OVERHEAD_BYTES = 200
"""What a trace costs beyond its compressed spans: its row and its three index entries."""

SIZE_TARGET = 0.95
"""When over `max_size`, delete down to this fraction of it, so the next batch does not tip the
store straight back over and retention does not run on every pass."""


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, rolled back if the block raises (autocommit connections)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _delete_through(conn: sqlite3.Connection, last_id: int) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM payloads WHERE id <= ?", (last_id,))
        conn.execute("DELETE FROM traces WHERE id <= ?", (last_id,))


def delete_stored_before(conn: sqlite3.Connection, cutoff_ns: int, max_rows: int) -> int:
    """Delete traces stored before `cutoff_ns` (at most `max_rows`); return how many went.

    Stops at the first trace stored at or after the cutoff: storage times grow with ids, except
    across a backwards jump of the wall clock, which delays a few deletions by the jump's size.
    """
    deleted = 0
    while deleted < max_rows:
        rows = conn.execute(
            "SELECT id, stored_ns FROM traces ORDER BY id LIMIT ?",
            (min(CHUNK_ROWS, max_rows - deleted),),
        ).fetchall()
        last_id = None
        expired = 0
        for row_id, stored_ns in rows:
            if stored_ns >= cutoff_ns:
                break
            last_id = row_id
            expired += 1
        if last_id is None:
            break
        _delete_through(conn, last_id)
        deleted += expired
        if expired < len(rows):
            break
    return deleted


def delete_oldest_over(conn: sqlite3.Connection, max_bytes: int, max_rows: int) -> int:
    """When the data in the file exceeds `max_bytes`, delete the oldest traces until the estimate
    says it is back under `SIZE_TARGET` of it (at most `max_rows`); return how many went.

    The estimate (compressed spans plus a fixed overhead per row) is checked against the real
    page count on the next pass, which deletes more if it fell short.
    """
    used = used_bytes(conn)
    if used <= max_bytes:
        return 0
    excess = used - int(max_bytes * SIZE_TARGET)
    deleted = 0
    while excess > 0 and deleted < max_rows:
        rows = conn.execute(
            "SELECT id, payload_bytes FROM traces ORDER BY id LIMIT ?",
            (min(CHUNK_ROWS, max_rows - deleted),),
        ).fetchall()
        if not rows:
            break
        last_id = rows[0][0]
        freed = 0
        taken = 0
        for row_id, payload_bytes in rows:
            last_id = row_id
            taken += 1
            freed += payload_bytes + ROW_OVERHEAD_BYTES
            if freed >= excess:
                break
        _delete_through(conn, last_id)
        deleted += taken
        excess -= freed
    return deleted
