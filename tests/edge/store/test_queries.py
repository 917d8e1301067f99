"""The read side: per-customer isolation, reweighting by sample rate, filters, keyset pages."""

from __future__ import annotations

import sqlite3

import pytest

from refinery_py.store import (
    StoreWriter,
    TraceFilter,
    customer_summary,
    list_customers,
    list_traces,
    queries,
)
from tests.edge.store.builders import BASE_NS, TraceSpec, kept_trace

SECOND = 10**9


def ids(rows: list[object]) -> list[int]:
    return [int.from_bytes(row.trace_id, "big") for row in rows]  # type: ignore[attr-defined]


def write(writer: StoreWriter, *specs: TraceSpec) -> None:
    outcome = writer.write([kept_trace(spec) for spec in specs])
    assert outcome.inserted + outcome.appended == len(specs)


def test_a_customer_sees_only_its_own_traces(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    customers = ["acme", "globex", "", "acme-2", "ACME"]
    write(
        writer,
        *[
            TraceSpec(
                n,
                customer=customers[n % 5],
                customer_attribute=bool(customers[n % 5]),
                start_ns=BASE_NS + n * SECOND,
                error=n % 3 == 0,
                rate=1 + n % 4,
            )
            for n in range(1, 51)
        ],
    )
    for customer in customers:
        expected = sorted((n for n in range(1, 51) if customers[n % 5] == customer), reverse=True)
        page = list_traces(reader, TraceFilter(customer=customer, limit=1000))
        assert ids(page.traces) == expected
        assert {row.customer for row in page.traces} == {customer}
        errors = list_traces(reader, TraceFilter(customer=customer, error=True, limit=1000))
        assert ids(errors.traces) == [n for n in expected if n % 3 == 0]
        summary = customer_summary(reader, customer)
        assert summary.kept == len(expected)
        assert summary.estimated_traces == sum(1 + n % 4 for n in expected)
    assert customer_summary(reader, "nobody").kept == 0


def test_estimates_are_reweighted_by_sample_rate(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    # 20 ordinary traces kept 1 in 10 stand for 200; 4 errors kept at rate 1 stand for 4.
    write(writer, *[TraceSpec(n, rate=10, route="/home") for n in range(1, 21)])
    write(writer, *[TraceSpec(n, rate=1, error=True, route="/pay") for n in range(21, 25)])
    summary = customer_summary(reader, "acme")
    assert summary.kept == 24
    assert summary.estimated_traces == 204
    assert summary.estimated_errors == 4
    assert summary.top_routes[0][0] == "/home"
    assert (summary.top_routes[0][1].kept, summary.top_routes[0][1].estimated) == (20, 200)
    assert (summary.top_routes[1][1].kept, summary.top_routes[1][1].estimated) == (4, 4)
    [(error_key, weight)] = summary.top_errors
    assert error_key == ("db.query 1", "failed")
    assert (weight.kept, weight.estimated) == (4, 4)


def test_duration_percentiles_are_weighted_by_sample_rate(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    # Nine fast traces kept at rate 1, one slow trace kept 1 in 91: the slow kind is 91% of the
    # real traffic, so the weighted median is slow although most kept traces are fast.
    write(writer, *[TraceSpec(n, duration_ms=10, rate=1) for n in range(1, 10)])
    write(writer, TraceSpec(10, duration_ms=1000, rate=91))
    summary = customer_summary(reader, "acme")
    assert summary.estimated_traces == 100
    assert summary.duration_p50_ns == 1_000_000_000
    assert summary.duration_p99_ns == 1_000_000_000


def test_unweighted_percentiles_match_the_plain_definition(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    write(writer, *[TraceSpec(n, duration_ms=n) for n in range(1, 101)])
    summary = customer_summary(reader, "acme")
    assert summary.duration_p50_ns == 50_000_000
    assert summary.duration_p95_ns == 95_000_000
    assert summary.duration_p99_ns == 99_000_000


def test_top_routes_rank_by_estimate_not_by_kept_count(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    write(writer, *[TraceSpec(n, route="/often-kept", rate=1) for n in range(1, 6)])
    write(writer, TraceSpec(6, route="/heavily-sampled", rate=20))
    summary = customer_summary(reader, "acme")
    assert [route for route, _ in summary.top_routes] == ["/heavily-sampled", "/often-kept"]


def test_a_summary_window_counts_only_traces_that_started_in_it(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    write(writer, *[TraceSpec(n, start_ns=BASE_NS + n * SECOND, rate=2) for n in range(1, 11)])
    summary = customer_summary(reader, "acme", BASE_NS + 3 * SECOND, BASE_NS + 7 * SECOND)
    assert (summary.kept, summary.estimated_traces) == (4, 8)
    empty = customer_summary(reader, "acme", BASE_NS + 100 * SECOND)
    assert (empty.kept, empty.duration_p50_ns, empty.top_routes) == (0, None, [])


def test_filters_combine(writer: StoreWriter, reader: sqlite3.Connection) -> None:
    write(
        writer,
        TraceSpec(1, service="web", route="/a", name="GET /a", duration_ms=5),
        TraceSpec(
            2,
            service="web",
            route="/b",
            name="GET /b",
            duration_ms=50,
            error=True,
            start_ns=BASE_NS + SECOND,
        ),
        TraceSpec(
            3,
            service="api",
            route="/a",
            name="GET /a",
            duration_ms=500,
            start_ns=BASE_NS + 2 * SECOND,
        ),
        TraceSpec(
            4,
            service="api",
            route=None,
            name="job",
            duration_ms=5000,
            start_ns=BASE_NS + 3 * SECOND,
        ),
    )

    def matching(**kwargs: object) -> list[int]:
        return ids(list_traces(reader, TraceFilter(**kwargs)).traces)  # type: ignore[arg-type]

    assert matching() == [4, 3, 2, 1]
    assert matching(service="web") == [2, 1]
    assert matching(name="/a") == [3, 1], "name matches the route"
    assert matching(name="GET /b") == [2], "and the root span's name"
    assert matching(name="job") == [4]
    assert matching(error=True) == [2]
    assert matching(error=False) == [4, 3, 1]
    assert matching(min_duration_ns=50_000_000) == [4, 3, 2]
    assert matching(since_ns=BASE_NS + SECOND, until_ns=BASE_NS + 3 * SECOND) == [3, 2]
    assert matching(service="api", min_duration_ns=1_000_000_000) == [4]
    assert matching(customer="acme", service="web", error=False) == [1]


def test_pages_continue_by_keyset_even_through_equal_start_times(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    # Seven traces share one start time; the trace ID breaks the tie, so no page repeats one.
    write(writer, *[TraceSpec(n, start_ns=BASE_NS) for n in range(1, 8)])
    write(writer, *[TraceSpec(n, start_ns=BASE_NS + SECOND) for n in range(8, 10)])
    seen: list[int] = []
    after = None
    pages = 0
    while True:
        page = list_traces(reader, TraceFilter(customer="acme", limit=2, after=after))
        seen.extend(ids(page.traces))
        pages += 1
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == [9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert pages == 5
    exact = list_traces(reader, TraceFilter(limit=9))
    assert exact.next_after is None, "a page that ends exactly at the last trace says so"


def test_customers_are_listed_by_estimated_volume(
    writer: StoreWriter, reader: sqlite3.Connection
) -> None:
    write(writer, *[TraceSpec(n, customer="many-kept", rate=1) for n in range(1, 6)])
    write(writer, TraceSpec(6, customer="heavily-sampled", rate=50, error=True))
    write(
        writer,
        TraceSpec(7, customer="", customer_attribute=False, rate=2, start_ns=BASE_NS + 10 * SECOND),
    )
    volumes = list_customers(reader)
    assert [(v.customer, v.kept, v.estimated_traces, v.estimated_errors) for v in volumes] == [
        ("heavily-sampled", 1, 50, 50),
        ("many-kept", 5, 5, 0),
        ("", 1, 2, 0),
    ]
    assert [v.customer for v in list_customers(reader, since_ns=BASE_NS + SECOND)] == [""]
    assert len(list_customers(reader, limit=1)) == 1


def test_summaries_agree_whether_they_sort_or_stream(
    writer: StoreWriter, reader: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        writer,
        *[
            TraceSpec(
                n,
                start_ns=BASE_NS + n * SECOND,
                route=f"/r{n % 7}",
                duration_ms=(n * 37) % 500 + 0.5,
                rate=1 + n % 13,
                error=n % 4 == 0,
                name=f"GET /r{n % 7}",
            )
            for n in range(1, 301)
        ],
    )
    windows = [(None, None), (BASE_NS + 50 * SECOND, BASE_NS + 120 * SECOND)]
    sorted_ = [customer_summary(reader, "acme", *window) for window in windows]
    monkeypatch.setattr(queries, "SORT_LIMIT", 0)
    streamed = [customer_summary(reader, "acme", *window) for window in windows]
    assert streamed == sorted_
    assert sorted_[1].kept == 70
