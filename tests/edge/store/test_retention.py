"""Retention: traces older than `store.retention` go, and the oldest go while over `max_size`."""

from __future__ import annotations

import random
import sqlite3

import pytest

import refinery_py.store.writer as writer_module
from refinery_py.model import SendReason
from refinery_py.store import StoreWriter
from refinery_py.store.schema import used_bytes
from tests.edge.store.builders import TraceSpec, kept_trace, trace_id_of
from tests.edge.store.conftest import Clock


def stored_ids(conn: sqlite3.Connection) -> list[bytes]:
    return [bytes(r[0]) for r in conn.execute("SELECT trace_id FROM traces ORDER BY id")]


def test_traces_older_than_the_retention_are_deleted(
    writer: StoreWriter, reader: sqlite3.Connection, clock: Clock
) -> None:
    writer.retention = 3600.0
    writer.write([kept_trace(TraceSpec(n)) for n in (1, 2)])
    clock.now += 1800
    writer.write([kept_trace(TraceSpec(n)) for n in (3, 4)])
    clock.now += 1800 - 1
    assert writer.enforce_retention() == (0, 0), "nothing is an hour old yet"
    clock.now += 2
    assert writer.enforce_retention() == (2, 0)
    assert stored_ids(reader) == [trace_id_of(3), trace_id_of(4)]
    assert writer.rows == 2
    clock.now += 1800
    assert writer.enforce_retention() == (2, 0)
    assert stored_ids(reader) == []
    assert reader.execute("SELECT count(*) FROM payloads").fetchone()[0] == 0


def test_age_is_counted_from_when_a_trace_was_stored_not_when_it_started(
    writer: StoreWriter, reader: sqlite3.Connection, clock: Clock
) -> None:
    writer.retention = 60.0
    ancient_start = int((clock.now - 10 * 86400) * 1e9)
    writer.write([kept_trace(TraceSpec(1, start_ns=ancient_start))])
    assert writer.enforce_retention() == (0, 0)
    assert stored_ids(reader) == [trace_id_of(1)]


def test_a_late_span_append_does_not_make_a_trace_younger(
    writer: StoreWriter, reader: sqlite3.Connection, clock: Clock
) -> None:
    writer.retention = 60.0
    writer.write([kept_trace(TraceSpec(1))])
    clock.now += 50
    writer.write([kept_trace(TraceSpec(1, children=0, send_reason=SendReason.LATE_SPAN))])
    clock.now += 11
    assert writer.enforce_retention() == (1, 0)


def test_a_large_backlog_is_deleted_over_several_passes(
    writer: StoreWriter, reader: sqlite3.Connection, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "RETENTION_MAX_ROWS", 30)
    writer.retention = 10.0
    writer.write([kept_trace(TraceSpec(n)) for n in range(1, 101)])
    clock.now += 11
    assert [writer.enforce_retention() for _ in range(4)] == [(30, 0), (30, 0), (30, 0), (10, 0)]
    assert stored_ids(reader) == []


def test_over_max_size_the_oldest_traces_are_deleted_until_it_fits(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    # Incompressible attributes make each trace take real space.
    rng = random.Random(3)
    blob = {f"blob.{i}": rng.randbytes(600).hex() for i in range(4)}
    for batch in range(10):
        writer.write(
            [kept_trace(TraceSpec(batch * 10 + n, extra=blob | {"n": n})) for n in range(1, 11)]
        )
    full = used_bytes(writer.conn)
    writer.max_bytes = full // 2
    by_age, by_size = writer.enforce_retention()
    assert by_age == 0
    assert 0 < by_size < 100
    # One more pass settles any shortfall of the estimate; then the data fits.
    writer.enforce_retention()
    assert used_bytes(writer.conn) <= writer.max_bytes
    remaining = stored_ids(reader)
    assert remaining, "only what was needed went"
    assert remaining == [trace_id_of(n) for n in range(101 - len(remaining), 101)], (
        "the oldest went first, the newest stayed"
    )
    assert writer.rows == len(remaining)
    # New traces reuse the freed pages: writing more keeps the file within its bound.
    pages_before = writer.conn.execute("PRAGMA page_count").fetchone()[0]
    writer.write([kept_trace(TraceSpec(1000 + n, extra=blob)) for n in range(5)])
    writer.enforce_retention()
    assert writer.conn.execute("PRAGMA page_count").fetchone()[0] <= pages_before + 5
    assert used_bytes(writer.conn) <= writer.max_bytes


def test_under_max_size_nothing_is_deleted(writer: StoreWriter) -> None:
    writer.write([kept_trace(TraceSpec(n)) for n in range(1, 20)])
    assert writer.enforce_retention() == (0, 0)
    assert writer.rows == 19
