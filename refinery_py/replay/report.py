"""What a replay says, per rule and per customer, as tables for people and JSON for tools."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from refinery_py.replay.simulate import ReplayedTrace, ReplayResult


@dataclass(slots=True)
class Tally:
    """Counts for one group of traces (a rule, a customer, or everything)."""

    traces: int = 0
    kept: int = 0
    spans: int = 0
    kept_spans: int = 0
    estimated_traces: int = 0
    """Traces the kept ones stand for: the sum of their sample rates."""

    def add(self, trace: ReplayedTrace) -> None:
        self.traces += 1
        self.spans += trace.span_count
        if trace.keep:
            self.kept += 1
            self.kept_spans += trace.span_count
            self.estimated_traces += trace.sample_rate


def rule_of(reason: str) -> str:
    """The rule part of a reason: `rules/trace/x:emadynamic` → `rules/trace/x`."""
    return reason.split(":", 1)[0]


def tally_by(traces: Iterable[ReplayedTrace], key: str) -> dict[tuple[str, ...], Tally]:
    groups: dict[tuple[str, ...], Tally] = {}
    for trace in traces:
        group = (trace.target, rule_of(trace.reason)) if key == "rule" else (trace.customer,)
        tally = groups.get(group)
        if tally is None:
            tally = groups[group] = Tally()
        tally.add(trace)
    return groups


def summary_document(result: ReplayResult) -> dict[str, Any]:
    """The `--json` document: every trace's decision, then per-rule and per-customer tallies."""
    duration = result.duration
    rules = tally_by(result.traces, "rule")
    customers = tally_by(result.traces, "customer")
    total = Tally()
    for trace in result.traces:
        total.add(trace)
    return {
        "traces": [
            {
                "trace_id": t.trace_id,
                "target": t.target,
                "keep": t.keep,
                "sample_rate": t.sample_rate,
                "reason": t.reason,
                "customer": t.customer,
                "span_count": t.span_count,
                "send_reason": t.send_reason,
            }
            for t in result.traces
        ],
        "rules": [
            {
                "target": target,
                "rule": rule,
                "traces": tally.traces,
                "kept": tally.kept,
                "kept_spans": tally.kept_spans,
                "estimated_kept_spans_per_sec": _per_second(tally.kept_spans, duration),
            }
            for (target, rule), tally in sorted(rules.items(), key=lambda kv: -kv[1].traces)
        ],
        "customers": [
            {
                "customer": customer,
                "traces": tally.traces,
                "kept": tally.kept,
                "estimated_traces": tally.estimated_traces,
            }
            for (customer,), tally in sorted(customers.items(), key=lambda kv: -kv[1].traces)
        ],
        "totals": {
            "traces": total.traces,
            "kept": total.kept,
            "spans": result.spans,
            "kept_spans": total.kept_spans,
            "late_spans": result.late_spans,
            "rescued_spans": result.rescued_spans,
            "rejected_spans": result.rejected_spans,
            "duration_seconds": round(duration, 3),
            "kept_spans_per_sec": _per_second(total.kept_spans, duration),
        },
    }


def _per_second(count: int, duration: float) -> float:
    return round(count / duration, 3) if duration > 0 else 0.0


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned text columns, numbers right-aligned."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(row[i]) for row in cells[1:]) and len(cells) > 1 for i in range(len(headers))
    ]
    lines = []
    for row in cells:
        parts = [
            value.rjust(widths[i]) if numeric[i] else value.ljust(widths[i])
            for i, value in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value) if value != "" else '""'


def _is_number(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def render(document: dict[str, Any], top_customers: int = 20) -> str:
    """The human report of one replay."""
    totals = document["totals"]
    out = [
        table(
            ["target", "rule", "traces", "kept", "kept %", "est. kept spans/s"],
            [
                [
                    r["target"],
                    r["rule"],
                    r["traces"],
                    r["kept"],
                    100.0 * r["kept"] / r["traces"] if r["traces"] else 0.0,
                    r["estimated_kept_spans_per_sec"],
                ]
                for r in document["rules"]
            ],
        ),
        "",
        table(
            ["customer", "traces", "kept", "est. traces"],
            [
                [c["customer"], c["traces"], c["kept"], c["estimated_traces"]]
                for c in document["customers"][:top_customers]
            ],
        ),
    ]
    hidden = len(document["customers"]) - top_customers
    if hidden > 0:
        out.append(f"... and {hidden} more customers (--json lists all)")
    out += [
        "",
        f"{totals['traces']:,} traces ({totals['spans']:,} spans) over "
        f"{totals['duration_seconds']:,.1f}s: kept {totals['kept']:,} traces, "
        f"{totals['kept_spans']:,} spans = {totals['kept_spans_per_sec']:,.1f} kept spans/s",
    ]
    if totals["late_spans"]:
        rescued = totals["rescued_spans"]
        out.append(
            f"{totals['late_spans']:,} late spans arrived after their trace was decided"
            + (
                f" ({rescued:,} of dropped traces kept: they met an earlier keep rule)"
                if rescued
                else ""
            )
        )
    return "\n".join(out)


def compare_document(a: ReplayResult, b: ReplayResult) -> dict[str, Any]:
    """How rules B would decide the same traffic differently from rules A."""
    before = {t.trace_id: t for t in a.traces}
    changed = []
    for trace in b.traces:
        old = before.get(trace.trace_id)
        if old is not None and (old.keep, old.sample_rate) != (trace.keep, trace.sample_rate):
            changed.append(
                {
                    "trace_id": trace.trace_id,
                    "customer": trace.customer,
                    "a": {"keep": old.keep, "sample_rate": old.sample_rate, "reason": old.reason},
                    "b": {
                        "keep": trace.keep,
                        "sample_rate": trace.sample_rate,
                        "reason": trace.reason,
                    },
                }
            )
    return {"a": summary_document(a), "b": summary_document(b), "changed": changed}


def render_compare(document: dict[str, Any], top: int = 20) -> str:
    a, b = document["a"], document["b"]
    changed = document["changed"]
    newly_kept = sum(1 for c in changed if c["b"]["keep"] and not c["a"]["keep"])
    newly_dropped = sum(1 for c in changed if c["a"]["keep"] and not c["b"]["keep"])
    customers_a = {c["customer"]: c for c in a["customers"]}
    deltas = []
    for customer in b["customers"]:
        old = customers_a.get(customer["customer"], {"kept": 0})
        if customer["kept"] != old["kept"]:
            deltas.append(
                [
                    customer["customer"],
                    old["kept"],
                    customer["kept"],
                    customer["kept"] - old["kept"],
                ]
            )
    deltas.sort(key=lambda row: -abs(row[3]))
    lines = [
        table(
            ["", "kept traces", "kept spans", "kept spans/s"],
            [
                [
                    "A",
                    a["totals"]["kept"],
                    a["totals"]["kept_spans"],
                    a["totals"]["kept_spans_per_sec"],
                ],
                [
                    "B",
                    b["totals"]["kept"],
                    b["totals"]["kept_spans"],
                    b["totals"]["kept_spans_per_sec"],
                ],
            ],
        ),
        "",
        f"{len(changed):,} traces decided differently: {newly_kept:,} kept only by B, "
        f"{newly_dropped:,} kept only by A, {len(changed) - newly_kept - newly_dropped:,} "
        "kept by both at different rates",
    ]
    if deltas:
        lines += ["", table(["customer", "kept (A)", "kept (B)", "change"], deltas[:top])]
    return "\n".join(lines)
