"""kill -9 while writing: the file stays a valid store and keeps every committed trace."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from refinery_py.store import (
    StoreWriter,
    TraceFilter,
    customer_summary,
    find_trace,
    list_traces,
    open_for_reading,
    open_for_writing,
    spans_json,
)
from tests.edge.store.builders import TraceSpec, kept_trace

REPO = Path(__file__).resolve().parents[3]


def committed_rows(path: Path) -> int:
    """Rows a reader sees now, 0 while the file is not there yet."""
    if not path.exists():
        return 0
    try:
        conn = open_for_reading(path)
    except OSError:
        return 0
    try:
        count: int = conn.execute("SELECT count(*) FROM traces").fetchone()[0]
        return count
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def kill_while_writing(path: Path, first: int, at_least: int) -> int:
    """Start a writer process, let it commit `at_least` more rows, kill -9 it.

    Returns the row count a reader had seen committed just before the kill.
    """
    before = committed_rows(path)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.edge.store.crash_writer", str(path), str(first)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        seen = before
        while seen < before + at_least:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.02)
            seen = committed_rows(path)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
        return seen
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child.stderr is not None:
            child.stderr.close()


def test_kill_9_during_writes_leaves_a_readable_store_with_every_commit(tmp_path: Path) -> None:
    path = tmp_path / "store" / "traces.db"
    for round_number in range(3):
        seen = kill_while_writing(path, first=1 + round_number * 1_000_000, at_least=2000)
        conn = open_for_reading(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            rows = conn.execute("SELECT count(*) FROM traces").fetchone()[0]
            payloads = conn.execute("SELECT count(*) FROM payloads").fetchone()[0]
            assert rows >= seen, "a committed batch was lost"
            assert payloads == rows, "a trace row without its spans, or spans without a row"
            page = list_traces(conn, TraceFilter(customer="c3", limit=20))
            assert page.traces
            assert {row.customer for row in page.traces} == {"c3"}
            summary = customer_summary(conn, "c3")
            assert summary.kept > 0
            found = find_trace(conn, page.traces[0].trace_id)
            assert found is not None
            assert len(spans_json(found[1])) == found[0].span_count
        finally:
            conn.close()
    # The writer side opens it again (WAL recovery) and carries on.
    conn = open_for_writing(path)
    try:
        writer = StoreWriter(conn, retention=86400.0, max_bytes=1 << 30)
        before = writer.rows
        assert writer.write([kept_trace(TraceSpec(5_000_000))]).inserted == 1
        assert writer.rows == before + 1
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
