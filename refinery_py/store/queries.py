"""The store's read side: trace lists, one trace, per-customer summaries, customers by volume.

Plain synchronous functions over a connection from `open_for_reading`; `StoreReader` runs them
off the event loop. Times are Unix nanoseconds; windows are `since <= start < until`. Every
estimate weighs a kept trace by its sample rate: a trace kept 1 in 10 stands for 10.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

SORT_LIMIT = 20_000
"""Up to this many traces in a summary's window, sorting them beats scanning an ordered index."""

_ROW_COLUMNS = (
    "trace_id, customer, service, name, route, start_ns, duration_ns, error, span_count, "
    "sample_rate, reason, send_reason"
)


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """What `list_traces` returns. None means "any"; `customer=""` means traces without one.

    `name` matches the root span's name or its route. `after` is the keyset position of the last
    trace of the previous page, `(start_ns, trace_id)`; the page continues strictly below it.
    """

    customer: str | None = None
    service: str | None = None
    name: str | None = None
    error: bool | None = None
    min_duration_ns: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    limit: int = 50
    after: tuple[int, bytes] | None = None


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One stored trace as the list shows it."""

    trace_id: bytes
    customer: str
    service: str
    name: str
    route: str
    start_ns: int
    duration_ns: int
    error: bool
    span_count: int
    sample_rate: int
    reason: str
    send_reason: str


@dataclass(frozen=True, slots=True)
class TracePage:
    """A page of the list, newest first, and where the next one starts (None: no more)."""

    traces: list[TraceRow]
    next_after: tuple[int, bytes] | None


@dataclass(frozen=True, slots=True)
class Weighted:
    """A group's kept traces and the traces they stand for."""

    kept: int
    estimated: int


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    """A customer's traffic in a window, reweighted by sample rate.

    Duration percentiles are in nanoseconds, None when there are no traces. `top_routes` maps
    route → estimate; `top_errors` maps (error span name, status message) → estimate.
    """

    customer: str
    kept: int
    estimated_traces: int
    estimated_errors: int
    duration_p50_ns: int | None
    duration_p95_ns: int | None
    duration_p99_ns: int | None
    top_routes: list[tuple[str, Weighted]]
    top_errors: list[tuple[tuple[str, str], Weighted]]


@dataclass(frozen=True, slots=True)
class CustomerVolume:
    """One customer's kept and estimated traces and errors in a window."""

    customer: str
    kept: int
    estimated_traces: int
    estimated_errors: int


def _window(since_ns: int | None, until_ns: int | None) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if since_ns is not None:
        clauses.append("start_ns >= ?")
        params.append(since_ns)
    if until_ns is not None:
        clauses.append("start_ns < ?")
        params.append(until_ns)
    return clauses, params


def _row(values: Any) -> TraceRow:
    """A TraceRow from the `_ROW_COLUMNS` of a result row (sqlite3 rows are untyped)."""
    return TraceRow(
        trace_id=bytes(values[0]),
        customer=values[1],
        service=values[2],
        name=values[3],
        route=values[4],
        start_ns=values[5],
        duration_ns=values[6],
        error=bool(values[7]),
        span_count=values[8],
        sample_rate=values[9],
        reason=values[10],
        send_reason=values[11],
    )


def list_traces(conn: sqlite3.Connection, where: TraceFilter) -> TracePage:
    """Traces matching `where`, newest start first (ties broken by trace ID, descending).

    Keyset pagination on (start_ns, trace_id): a page starts strictly below the previous page's
    last trace, so traces stored between two requests never shift or repeat later pages.
    """
    clauses, params = _window(where.since_ns, where.until_ns)
    if where.customer is not None:
        clauses.append("customer = ?")
        params.append(where.customer)
    if where.service is not None:
        clauses.append("service = ?")
        params.append(where.service)
    if where.name is not None:
        clauses.append("(name = ? OR route = ?)")
        params.extend((where.name, where.name))
    if where.error is not None:
        clauses.append("error = ?")
        params.append(int(where.error))
    if where.min_duration_ns is not None:
        clauses.append("duration_ns >= ?")
        params.append(where.min_duration_ns)
    if where.after is not None:
        clauses.append("(start_ns, trace_id) < (?, ?)")
        params.extend(where.after)
    index = "traces_by_customer" if where.customer is not None else "traces_by_time"
    sql = (
        f"SELECT {_ROW_COLUMNS} FROM traces INDEXED BY {index}"
        + (" WHERE " + " AND ".join(clauses) if clauses else "")
        + " ORDER BY start_ns DESC, trace_id DESC LIMIT ?"
    )
    rows = conn.execute(sql, (*params, where.limit + 1)).fetchall()
    traces = [_row(r) for r in rows[: where.limit]]
    more = len(rows) > where.limit
    return TracePage(traces, (traces[-1].start_ns, traces[-1].trace_id) if more else None)


def find_trace(conn: sqlite3.Connection, trace_id: bytes) -> tuple[TraceRow, bytes] | None:
    """A stored trace's row and its compressed payload, or None."""
    found = conn.execute(
        f"SELECT {_ROW_COLUMNS}, body FROM traces JOIN payloads USING (id) WHERE trace_id = ?",
        (trace_id,),
    ).fetchone()
    if found is None:
        return None
    return _row(found[:-1]), bytes(found[-1])


def customer_summary(
    conn: sqlite3.Connection,
    customer: str,
    since_ns: int | None = None,
    until_ns: int | None = None,
    top: int = 10,
) -> CustomerSummary:
    """A customer's totals, error rate, weighted duration percentiles, top routes and errors.

    Every part reads an index alone (no table rows). Percentiles and top routes need the window's
    traces ordered by duration or route: up to `SORT_LIMIT` traces they are sorted from the
    time-ordered index; beyond, they stream from an index kept in that order, which scans the
    customer's traces outside the window too but never sorts (measured on 100,000 traces: the
    sorts take 50-100 ms, the ordered scans 10-20 ms).
    """
    clauses, window = _window(since_ns, until_ns)
    where = " AND ".join(["customer = ?", *clauses])
    params = (customer, *window)
    kept, estimated, errors = conn.execute(
        "SELECT count(*), coalesce(sum(sample_rate), 0), coalesce(sum(sample_rate * error), 0) "
        f"FROM traces INDEXED BY traces_by_customer WHERE {where}",
        params,
    ).fetchone()
    few = kept <= SORT_LIMIT
    by_duration = "traces_by_customer" if few else "traces_by_customer_duration"
    by_route = "traces_by_customer" if few else "traces_by_customer_route"
    p50 = p95 = p99 = None
    if kept:
        # Weighted percentile: the smallest duration whose cumulative weight reaches p × total.
        p50, p95, p99 = conn.execute(
            "SELECT min(CASE WHEN cum >= ? THEN d END), min(CASE WHEN cum >= ? THEN d END), "
            "min(CASE WHEN cum >= ? THEN d END) FROM (SELECT duration_ns AS d, "
            "sum(sample_rate) OVER (ORDER BY duration_ns ROWS UNBOUNDED PRECEDING) AS cum "
            f"FROM traces INDEXED BY {by_duration} WHERE {where})",
            (0.50 * estimated, 0.95 * estimated, 0.99 * estimated, *params),
        ).fetchone()
    routes = conn.execute(
        "SELECT route, count(*), sum(sample_rate) AS estimated "
        f"FROM traces INDEXED BY {by_route} WHERE {where} "
        "GROUP BY route ORDER BY estimated DESC, route LIMIT ?",
        (*params, top),
    ).fetchall()
    failures = conn.execute(
        "SELECT error_name, error_message, count(*), sum(sample_rate) AS estimated "
        f"FROM traces INDEXED BY traces_with_errors WHERE {where} AND error = 1 "
        "GROUP BY error_name, error_message ORDER BY estimated DESC, error_name LIMIT ?",
        (*params, top),
    ).fetchall()
    return CustomerSummary(
        customer=customer,
        kept=kept,
        estimated_traces=estimated,
        estimated_errors=errors,
        duration_p50_ns=p50,
        duration_p95_ns=p95,
        duration_p99_ns=p99,
        top_routes=[(route, Weighted(n, w)) for route, n, w in routes],
        top_errors=[((name, message), Weighted(n, w)) for name, message, n, w in failures],
    )


def list_customers(
    conn: sqlite3.Connection,
    since_ns: int | None = None,
    until_ns: int | None = None,
    limit: int = 100,
) -> list[CustomerVolume]:
    """Customers by estimated trace volume in the window, largest first."""
    clauses, params = _window(since_ns, until_ns)
    rows = conn.execute(
        "SELECT customer, count(*), sum(sample_rate) AS estimated, sum(sample_rate * error) "
        "FROM traces INDEXED BY traces_by_customer"
        + (" WHERE " + " AND ".join(clauses) if clauses else "")
        + " GROUP BY customer ORDER BY estimated DESC, customer LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [CustomerVolume(c, n, w, e) for c, n, w, e in rows]
