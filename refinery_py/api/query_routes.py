"""The query API over the embedded store: trace lists, one trace, customer summaries.

Every store call runs on the store reader's threads (`StoreReader.run`), including decompressing
and converting a trace's spans, so a slow query never stalls ingest on the event loop. With the
store off (`store.path: null`) the list, summary and customer endpoints answer 503 saying so,
and a trace lookup answers from the decision cache alone.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from refinery_py.api.errors import ApiError, Handler
from refinery_py.api.query_json import (
    customers_json,
    decision_json,
    page_json,
    stored_trace_json,
    summary_json,
)
from refinery_py.api.query_params import (
    BadParameter,
    customers_query,
    parse_trace_id,
    summary_window,
    trace_filter,
)
from refinery_py.assemble.decision_cache import CachedDecision
from refinery_py.store import (
    StoreReader,
    StoreUnavailable,
    customer_summary,
    find_trace,
    list_customers,
    list_traces,
    spans_json,
)
from refinery_py.store.queries import TraceRow

DecisionLookup = Callable[[bytes], CachedDecision | None]
"""The decision cache as the API sees it: trace ID → what was decided, if still remembered."""

T = TypeVar("T")

STORE_OFF = "the embedded store is off (store.path is null), so there are no traces to query"


def _json(document: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(document), status=status, content_type="application/json")


class QueryHandlers:
    """The handlers, sharing the reader, the decision lookup and the clock."""

    def __init__(
        self,
        reader: StoreReader | None,
        decisions: DecisionLookup | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reader = reader
        self.decisions = decisions
        self.clock = clock

    async def _query(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if self.reader is None:
            raise ApiError(503, STORE_OFF)
        try:
            return await self.reader.run(query)
        except StoreUnavailable as exc:
            raise ApiError(503, f"the store is unavailable: {exc}") from None

    async def traces(self, request: web.Request) -> web.Response:
        """`GET /api/v1/traces`: the filtered list, newest first, a page at a time."""
        try:
            where = trace_filter(request.query.items(), self.clock())
        except BadParameter as exc:
            raise ApiError(400, str(exc)) from None
        page = await self._query(lambda conn: list_traces(conn, where))
        return _json(page_json(page))

    async def trace(self, request: web.Request) -> web.Response:
        """`GET /api/v1/traces/{trace_id}`: a stored trace with its spans, else the remembered
        decision of a trace not stored (dropped, or kept but not written yet), else 404."""
        try:
            trace_id = parse_trace_id(request.match_info["trace_id"])
        except BadParameter as exc:
            raise ApiError(400, str(exc)) from None
        if self.reader is not None:
            stored = await self._query(lambda conn: _load_trace(conn, trace_id))
            if stored is not None:
                row, spans = stored
                return _json(stored_trace_json(row, spans))
        cached = self.decisions(trace_id) if self.decisions is not None else None
        if cached is None:
            raise ApiError(404, f"trace {trace_id.hex()} is not stored and has no known decision")
        decision = cached.decision
        return _json(
            {
                "trace_id": trace_id.hex(),
                "decision": decision_json(
                    decision.keep, decision.rate, decision.reason, cached.send_reason.value
                ),
                "spans": [],
            }
        )

    async def summary(self, request: web.Request) -> web.Response:
        """`GET /api/v1/customers/{customer}/summary`: reweighted totals for one customer."""
        customer = request.match_info["customer"]
        try:
            since, until = summary_window(request.query.items(), self.clock())
        except BadParameter as exc:
            raise ApiError(400, str(exc)) from None
        summary = await self._query(lambda conn: customer_summary(conn, customer, since, until))
        return _json(summary_json(summary))

    async def customers(self, request: web.Request) -> web.Response:
        """`GET /api/v1/customers`: customers by estimated trace volume."""
        try:
            since, until, limit = customers_query(request.query.items(), self.clock())
        except BadParameter as exc:
            raise ApiError(400, str(exc)) from None
        volumes = await self._query(lambda conn: list_customers(conn, since, until, limit))
        return _json(customers_json(volumes))


def _load_trace(
    conn: sqlite3.Connection, trace_id: bytes
) -> tuple[TraceRow, list[dict[str, Any]]] | None:
    """Row and decoded spans, on the reader thread (decompressing is CPU work)."""
    found = find_trace(conn, trace_id)
    if found is None:
        return None
    row, body = found
    return row, spans_json(body)


def query_routes(handlers: QueryHandlers, trace: Handler | None = None) -> list[web.RouteDef]:
    """The query API's routes; `trace` replaces the one-trace lookup (a cluster member asks the
    trace's owner)."""
    return [
        web.get("/api/v1/traces", handlers.traces),
        web.get("/api/v1/traces/{trace_id}", trace or handlers.trace),
        web.get("/api/v1/customers", handlers.customers),
        # `.*` so that the empty customer ("": traces without one) has a URL too.
        web.get("/api/v1/customers/{customer:.*}/summary", handlers.summary),
    ]
