"""Where `refinery-py query` gets its answers: a running node's API, or a store file directly.

Both give back the API's JSON documents, so the printing code (and `--json`) cannot tell them
apart. Parameters travel as the API's query-string pairs in both cases; the file source parses
them with the API's own parser.
"""

from __future__ import annotations

import sqlite3
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from refinery_py.api.query_json import (
    customers_json,
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
from refinery_py.store import (
    StoreReader,
    StoreUnavailable,
    customer_summary,
    find_trace,
    list_customers,
    list_traces,
    spans_json,
)

T = TypeVar("T")
Pairs = Sequence[tuple[str, str]]
JsonDict = dict[str, Any]

HTTP_TIMEOUT = 30.0


class QueryFailed(Exception):
    """The question could not be answered; the message says why, for the terminal."""


class TraceQuestions(Protocol):
    """The query API's questions about traces: which match, and one whole."""

    def traces(self, params: Pairs) -> JsonDict: ...

    def trace(self, trace_id: str) -> JsonDict: ...


class CustomerQuestions(Protocol):
    """The query API's questions about customers: one's summary, and who they are."""

    def summary(self, customer: str, params: Pairs) -> JsonDict: ...

    def customers(self, params: Pairs) -> JsonDict: ...


class Source(TraceQuestions, CustomerQuestions, Protocol):
    """Answers the four questions of the query API (a node's API, or a store file)."""


class ApiSource:
    """Asks a node's HTTP API (`--api`), with the bearer token if one is given (and, for an
    https:// API, `tls`: the CA to check it against, a client certificate)."""

    def __init__(self, base_url: str, token: str | None, tls: ssl.SSLContext | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.tls = tls

    def _get(self, path: str, params: Pairs = ()) -> JsonDict:
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(list(params))
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(
                request, timeout=HTTP_TIMEOUT, context=self.tls
            ) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            with error:
                raise QueryFailed(f"{error.code}: {_error_message(error.read())}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise QueryFailed(f"cannot reach the API at {self.base_url}: {reason}") from None
        document = orjson.loads(body)
        if not isinstance(document, dict):
            raise QueryFailed(f"unexpected answer from {url}")
        return document

    def traces(self, params: Pairs) -> JsonDict:
        return self._get("/api/v1/traces", params)

    def trace(self, trace_id: str) -> JsonDict:
        return self._get("/api/v1/traces/" + urllib.parse.quote(trace_id, safe=""))

    def summary(self, customer: str, params: Pairs) -> JsonDict:
        path = f"/api/v1/customers/{urllib.parse.quote(customer, safe='')}/summary"
        return self._get(path, params)

    def customers(self, params: Pairs) -> JsonDict:
        return self._get("/api/v1/customers", params)


def _error_message(body: bytes) -> str:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace").strip() or "no message"
    if isinstance(document, dict) and "error" in document:
        return str(document["error"])
    return str(document)


class StoreFileSource:
    """Reads a store file directly (`--store`), no server needed. Decisions of traces that
    were dropped are only in a running node's memory, so here unknown means not stored."""

    def __init__(self, path: str | Path) -> None:
        self.reader = StoreReader(path, threads=1)

    def close(self) -> None:
        self.reader.close()

    def _now(self) -> float:
        return time.time()

    def traces(self, params: Pairs) -> JsonDict:
        where = _parsed(lambda: trace_filter(params, self._now()))
        return page_json(self._run(lambda conn: list_traces(conn, where)))

    def trace(self, trace_id: str) -> JsonDict:
        key = _parsed(lambda: parse_trace_id(trace_id))
        found = self._run(lambda conn: find_trace(conn, key))
        if found is None:
            raise QueryFailed(f"404: trace {key.hex()} is not in the store")
        row, body = found
        return stored_trace_json(row, spans_json(body))

    def summary(self, customer: str, params: Pairs) -> JsonDict:
        since, until = _parsed(lambda: summary_window(params, self._now()))
        return summary_json(self._run(lambda conn: customer_summary(conn, customer, since, until)))

    def customers(self, params: Pairs) -> JsonDict:
        since, until, limit = _parsed(lambda: customers_query(params, self._now()))
        return customers_json(self._run(lambda conn: list_customers(conn, since, until, limit)))

    def _run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return self.reader.run_sync(query)
        except StoreUnavailable as exc:
            raise QueryFailed(str(exc)) from None


def _parsed(parse: Callable[[], T]) -> T:
    try:
        return parse()
    except BadParameter as exc:
        raise QueryFailed(f"400: {exc}") from None
