"""Human-readable renderings of the query API's documents, for `refinery-py query`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

JsonDict = dict[str, Any]

_ERROR_STATUS = 2


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [value.ljust(widths[i]) for i, value in enumerate(row[:-1])]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)


def _duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 1000:
        return f"{ms / 1000:.2f}s"
    return f"{ms:.1f}ms"


def _short_time(rfc3339: str) -> str:
    """`2026-05-09T07:35:25.123456789Z` → `2026-05-09 07:35:25.123`."""
    return rfc3339.replace("T", " ")[:23]


def render_traces(document: JsonDict) -> str:
    traces = document.get("traces", [])
    if not traces:
        return "no traces match"
    rows = [
        (
            _short_time(t["start_time"]),
            _duration(t["duration_ms"]),
            "ERROR" if t["error"] else "",
            t["span_count"],
            t["sample_rate"],
            t["customer"] or '""',
            t["service"],
            t["name"],
            t["trace_id"],
        )
        for t in traces
    ]
    text = table(
        (
            "START (UTC)",
            "DURATION",
            "ERROR",
            "SPANS",
            "RATE",
            "CUSTOMER",
            "SERVICE",
            "NAME",
            "TRACE",
        ),
        rows,
    )
    if document.get("next_cursor"):
        text += f"\n\nmore: add --cursor {document['next_cursor']}"
    return text


def render_trace(document: JsonDict) -> str:
    decision = document.get("decision")
    head = f"trace {document['trace_id']}"
    if decision is None:
        lines = [f"{head}: no decision known"]
    else:
        verdict = "kept" if decision["kept"] else "dropped"
        lines = [
            f"{head}: {verdict} at rate {decision['sample_rate']} by {decision['reason']!r} "
            f"({decision['send_reason']})"
        ]
    spans = document.get("spans", [])
    if not spans:
        if decision is not None and decision["kept"]:
            lines.append("its spans are not in the store (not written yet, or not kept there)")
        return "\n".join(lines)
    lines.append("")
    lines.extend(_span_tree(spans))
    return "\n".join(lines)


def _span_tree(spans: list[JsonDict]) -> list[str]:
    """One line per span, children indented under their parent, in start order."""
    ids = {span.get("spanId") for span in spans}
    children: dict[str | None, list[JsonDict]] = {}
    for span in spans:
        parent = span.get("parentSpanId")
        children.setdefault(parent if parent in ids else None, []).append(span)
    trace_start = min(int(span.get("startTimeUnixNano", 0)) for span in spans)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            start = int(span.get("startTimeUnixNano", 0))
            end = int(span.get("endTimeUnixNano", 0))
            service = _resource_service(span)
            status = span.get("status", {})
            error = ""
            if status.get("code") == _ERROR_STATUS:
                error = f"  ERROR {status.get('message', '')}".rstrip()
            lines.append(
                f"{'  ' * depth}{span.get('name', '')}  [{service}]  "
                f"+{_duration((start - trace_start) / 1e6)}  {_duration((end - start) / 1e6)}"
                f"{error}"
            )
            walk(span.get("spanId"), depth + 1)

    walk(None, 0)
    return lines


def _resource_service(span: JsonDict) -> str:
    for attribute in span.get("resource", {}).get("attributes", []):
        if attribute.get("key") == "service.name":
            return str(attribute.get("value", {}).get("stringValue", ""))
    return ""


def render_summary(document: JsonDict) -> str:
    durations = document["duration_ms"]
    lines = [
        table(
            ("CUSTOMER", document["customer"] or '""'),
            [
                ("kept traces", document["kept_traces"]),
                ("estimated traces", document["estimated_traces"]),
                ("estimated errors", document["estimated_errors"]),
                ("error rate", f"{document['error_rate'] * 100:.2f}%"),
                (
                    "duration p50 / p95 / p99",
                    " / ".join(_duration(durations[p]) for p in ("p50", "p95", "p99")),
                ),
            ],
        )
    ]
    routes = document.get("top_routes", [])
    if routes:
        lines += [
            "",
            table(
                ("TOP ROUTES", "ESTIMATED", "KEPT"),
                [(r["name"], r["estimated_traces"], r.get("kept_traces")) for r in routes],
            ),
        ]
    errors = document.get("top_errors", [])
    if errors:
        lines += [
            "",
            table(
                ("TOP ERRORS", "MESSAGE", "ESTIMATED", "KEPT"),
                [
                    (e["name"], e["message"], e["estimated_traces"], e.get("kept_traces"))
                    for e in errors
                ],
            ),
        ]
    return "\n".join(lines)


def render_customers(document: JsonDict) -> str:
    customers = document.get("customers", [])
    if not customers:
        return "no traces stored"
    return table(
        ("CUSTOMER", "ESTIMATED", "KEPT", "EST. ERRORS", "ERROR RATE"),
        [
            (
                c["customer"] or '""',
                c["estimated_traces"],
                c["kept_traces"],
                c["estimated_errors"],
                f"{c['error_rate'] * 100:.2f}%",
            )
            for c in customers
        ],
    )
