"""The query API's JSON documents, built from the store's rows.

`start_time` is RFC 3339 in UTC with nine fractional digits (`2026-05-09T07:35:25.123456789Z`):
exact to the nanosecond, and it sorts as text. Durations are float milliseconds. The command
line's `--store` mode builds its output here too, so both modes print the same documents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from refinery_py.api.query_params import encode_cursor
from refinery_py.store.queries import CustomerSummary, CustomerVolume, TracePage, TraceRow

JsonDict = dict[str, Any]


def format_time(ns: int) -> str:
    """Unix nanoseconds as RFC 3339 UTC with nanoseconds."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def _ms(ns: int | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 6)


def trace_json(row: TraceRow) -> JsonDict:
    """One trace of the list. `route` (beyond the contract) is the root's `http.route`, or its
    name when it has none: the key of a summary's top routes."""
    return {
        "trace_id": row.trace_id.hex(),
        "customer": row.customer,
        "service": row.service,
        "name": row.name,
        "route": row.route,
        "start_time": format_time(row.start_ns),
        "duration_ms": _ms(row.duration_ns),
        "error": row.error,
        "span_count": row.span_count,
        "sample_rate": row.sample_rate,
        "reason": row.reason,
    }


def page_json(page: TracePage) -> JsonDict:
    """`{"traces": [...], "next_cursor": str|null}`."""
    return {
        "traces": [trace_json(row) for row in page.traces],
        "next_cursor": encode_cursor(page.next_after) if page.next_after else None,
    }


def decision_json(kept: bool, sample_rate: int, reason: str, send_reason: str) -> JsonDict:
    return {"kept": kept, "sample_rate": sample_rate, "reason": reason, "send_reason": send_reason}


def stored_trace_json(row: TraceRow, spans: list[JsonDict]) -> JsonDict:
    """A stored (so kept) trace: its decision as the row records it, and its spans."""
    return {
        "trace_id": row.trace_id.hex(),
        "decision": decision_json(True, row.sample_rate, row.reason, row.send_reason),
        "spans": spans,
    }


def summary_json(summary: CustomerSummary) -> JsonDict:
    """The contract's summary; `top_errors` entries are `{"name", "message", "kept_traces",
    "estimated_traces"}`: the name and status message of the error span that ended first."""
    estimated = summary.estimated_traces
    return {
        "customer": summary.customer,
        "kept_traces": summary.kept,
        "estimated_traces": estimated,
        "estimated_errors": summary.estimated_errors,
        "error_rate": round(summary.estimated_errors / estimated, 6) if estimated else 0.0,
        "duration_ms": {
            "p50": _ms(summary.duration_p50_ns),
            "p95": _ms(summary.duration_p95_ns),
            "p99": _ms(summary.duration_p99_ns),
        },
        "top_routes": [
            {"name": route, "kept_traces": w.kept, "estimated_traces": w.estimated}
            for route, w in summary.top_routes
        ],
        "top_errors": [
            {
                "name": name,
                "message": message,
                "kept_traces": w.kept,
                "estimated_traces": w.estimated,
            }
            for (name, message), w in summary.top_errors
        ],
    }


def customers_json(volumes: list[CustomerVolume]) -> JsonDict:
    """`{"customers": [{"customer", "kept_traces", "estimated_traces", "estimated_errors",
    "error_rate"}, ...]}`, largest estimated volume first."""
    return {
        "customers": [
            {
                "customer": v.customer,
                "kept_traces": v.kept,
                "estimated_traces": v.estimated_traces,
                "estimated_errors": v.estimated_errors,
                "error_rate": (
                    round(v.estimated_errors / v.estimated_traces, 6) if v.estimated_traces else 0.0
                ),
            }
            for v in volumes
        ]
    }
