"""Writing kept traces: rows as the queries need them, late spans merged, bad input counted."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from refinery_py.model import SendReason
from refinery_py.store import (
    StoreUnavailable,
    StoreWriter,
    TraceFilter,
    find_trace,
    list_traces,
    open_for_reading,
    open_for_writing,
    spans_json,
)
from tests.edge.store.builders import BASE_NS, TraceSpec, kept_trace, late_spans, trace_id_of


def test_a_kept_trace_becomes_one_row_described_by_its_root(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    spec = TraceSpec(
        1,
        customer="acme",
        service="checkout",
        route="/cart/{id}",
        name="POST /cart/7",
        duration_ms=120.5,
        error=True,
        children=3,
        rate=10,
        reason="rules/trace/keep errors",
    )
    outcome = writer.write([kept_trace(spec)])
    assert (outcome.inserted, outcome.appended, outcome.written_spans) == (1, 0, 4)
    found = find_trace(reader, trace_id_of(1))
    assert found is not None
    row, body = found
    assert row.customer == "acme"
    assert row.service == "checkout"
    assert row.name == "POST /cart/7"
    assert row.route == "/cart/{id}"
    assert row.start_ns == BASE_NS
    assert row.duration_ns == 120_500_000
    assert row.error is True
    assert row.span_count == 4
    assert row.sample_rate == 10
    assert row.reason == "rules/trace/keep errors"
    assert row.send_reason == "trace_send_got_root"
    spans = spans_json(body)
    assert [span["name"] for span in spans] == [
        "POST /cart/7",
        "db.query 0",
        "db.query 1",
        "db.query 2",
    ]
    root = spans[0]
    assert root["traceId"] == trace_id_of(1).hex()
    attributes = {a["key"]: a["value"] for a in root["attributes"]}
    assert attributes["SampleRate"] == {"intValue": "10"}
    assert attributes["meta.span_count"] == {"intValue": "4"}
    assert {"key": "service.name", "value": {"stringValue": "checkout"}} in root["resource"][
        "attributes"
    ]


def test_a_root_without_a_route_is_listed_under_its_name(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    writer.write([kept_trace(TraceSpec(1, route=None, name="process job"))])
    found = find_trace(reader, trace_id_of(1))
    assert found is not None
    assert (found[0].name, found[0].route) == ("process job", "process job")


def test_a_trace_without_its_root_is_described_by_its_earliest_span_and_whole_extent(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    writer.write(
        [
            kept_trace(
                TraceSpec(
                    1, with_root=False, children=3, duration_ms=10, send_reason=SendReason.EXPIRED
                )
            )
        ]
    )
    found = find_trace(reader, trace_id_of(1))
    assert found is not None
    row = found[0]
    assert row.name == "db.query 0"
    assert row.start_ns == BASE_NS + 1000
    assert row.duration_ns == 2000 + 5_000_000  # first child start to last child end
    assert row.sample_rate == 1  # no root to carry SampleRate: the decision's rate
    assert row.send_reason == "trace_send_expired"


def test_late_spans_are_appended_to_the_stored_trace_not_stored_twice(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    writer.write([kept_trace(TraceSpec(1, children=2, rate=5))])
    outcome = writer.write([late_spans(1, 3, customer="", rate=5)])
    assert (outcome.inserted, outcome.appended) == (0, 1)
    assert reader.execute("SELECT count(*) FROM traces").fetchone()[0] == 1
    found = find_trace(reader, trace_id_of(1))
    assert found is not None
    row, body = found
    assert row.span_count == 6
    assert row.customer == "acme", "late spans without a customer keep the trace's"
    assert row.send_reason == "trace_send_got_root", "the row keeps its original decision"
    assert row.sample_rate == 5
    names = [span["name"] for span in spans_json(body)]
    assert sorted(names) == sorted(
        ["GET /api/orders", "db.query 0", "db.query 1", "late 0", "late 1", "late 2"]
    )
    assert writer.rows == 1


def test_a_late_root_fills_in_what_the_trace_lacked(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    writer.write([kept_trace(TraceSpec(1, with_root=False, customer="", customer_attribute=False))])
    late_root = kept_trace(
        TraceSpec(
            1, children=0, name="GET /late", route="/late", rate=3, send_reason=SendReason.LATE_SPAN
        )
    )
    writer.write([late_root])
    found = find_trace(reader, trace_id_of(1))
    assert found is not None
    row = found[0]
    assert (row.name, row.route, row.customer, row.span_count) == ("GET /late", "/late", "acme", 3)
    assert row.sample_rate == 3


def test_late_spans_in_the_same_batch_as_their_trace_are_merged(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    outcome = writer.write([kept_trace(TraceSpec(1)), late_spans(1, 2), kept_trace(TraceSpec(2))])
    assert (outcome.inserted, outcome.appended) == (2, 1)
    found = find_trace(reader, trace_id_of(1))
    assert found is not None
    assert found[0].span_count == 5


def test_late_spans_of_a_trace_not_stored_become_a_row_of_their_own(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    writer.write([late_spans(9, 2, customer="acme")])
    found = find_trace(reader, trace_id_of(9))
    assert found is not None
    assert (found[0].span_count, found[0].customer, found[0].send_reason) == (
        2,
        "acme",
        "trace_send_late_span",
    )


def test_traces_without_a_customer_are_stored_and_queried_under_the_empty_customer(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    writer.write(
        [
            kept_trace(TraceSpec(1, customer="", customer_attribute=False)),
            kept_trace(TraceSpec(2, customer="acme")),
        ]
    )
    page = list_traces(reader, TraceFilter(customer=""))
    assert [row.trace_id for row in page.traces] == [trace_id_of(1)]
    assert len(list_traces(reader, TraceFilter()).traces) == 2


def test_an_unreadable_payload_is_counted_and_the_rest_of_the_batch_written(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    good = kept_trace(TraceSpec(1))
    garbage = replace(kept_trace(TraceSpec(2)), payload=b"\xff\xff\xff not protobuf")
    empty = replace(kept_trace(TraceSpec(3)), payload=b"")
    outcome = writer.write([good, garbage, empty])
    assert (outcome.inserted, outcome.invalid, outcome.invalid_spans) == (1, 2, 6)
    assert reader.execute("SELECT count(*) FROM traces").fetchone()[0] == 1


def test_a_failing_transaction_is_retried_trace_by_trace(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    # A trigger that refuses one customer stands in for a write that fails for one trace.
    writer.conn.execute(
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON traces WHEN NEW.customer = 'bad' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    outcome = writer.write(
        [
            kept_trace(TraceSpec(1)),
            kept_trace(TraceSpec(2, customer="bad")),
            kept_trace(TraceSpec(3)),
        ]
    )
    assert (outcome.inserted, outcome.failed, outcome.failed_spans) == (2, 1, 3)
    assert outcome.failed_transactions == 2  # the batch, then the bad trace alone
    assert "refused" in outcome.last_error
    assert writer.rows == 2
    assert reader.execute("SELECT count(*) FROM traces").fetchone()[0] == 2


def test_times_beyond_sqlite_integers_are_clamped(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    writer.write([kept_trace(TraceSpec(1, start_ns=(1 << 64) - 10**9, duration_ms=0.5))])
    found = find_trace(reader, trace_id_of(1))
    assert found is not None
    assert found[0].start_ns == (1 << 63) - 1


def test_the_parent_directory_is_created_and_the_file_is_in_wal_mode(store_path: Path) -> None:
    conn = open_for_writing(store_path)
    try:
        assert store_path.parent.is_dir()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        conn.close()


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable, match=r"bogus\.db"):
        open_for_writing(bogus)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    with pytest.raises(StoreUnavailable, match="schema version 7"):
        open_for_writing(other)
    with pytest.raises(StoreUnavailable, match="no store"):
        open_for_reading(tmp_path / "missing.db")
