"""The benchmark's one printed table, the issues' targets checked against it, and the JSON.

Every figure comes from bench/ramp.py's `Result`s; this module only divides and formats. The
comparison with the Collector uses the refinery_py run whose rules match the Collector's
policies (bench/rules/collector-equivalent.yaml, else bench/rules/trace-scope.yaml, which on
the benchmark's traffic decides as those policies do), with the most workers (the Collector uses
every core too), else the first run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.ceiling import Ceiling
from bench.floor import Floor
from bench.ramp import Load, Result

MIB = 1 << 20
EQUIVALENT_RULES = ("collector-equivalent", "trace-scope")
"""Rules files (by stem) whose decisions are the Collector's policies', best first."""
TRACE_SCOPE = "trace-scope"
DEFAULT = "default"


@dataclass
class Context:
    """What the run was: machine, load, floor, sender ceiling."""

    cpus: int
    protocol: str
    sender_processes: int
    connections: int
    payload_spans: int
    payload_requests: int
    wire_bytes_per_span: float
    send_delay: float
    trace_timeout: float
    floor: Floor
    """The first measurement (with parse-only)."""
    floors: list[float]
    """Parse + serialize spans/s, measured again before each server."""
    ceiling: Ceiling
    mode: str
    notes: list[str] = field(default_factory=list)


def _rate(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:,.0f}"


def _ratio(top: float | None, bottom: float | None, suffix: str = "×") -> str:
    if not top or not bottom:
        return "—"
    return f"{top / bottom:.2f}{suffix}"


def _reference_cpu(load: Load | None) -> str:
    """The reference phase's CPU per 100k spans, or why there is none."""
    if load is None or load.reference is None:
        return "—"
    figure = load.reference_cpu_per_100k
    return f"{figure:.2f}" if figure is not None else f"did not hold: {load.reference.verdict}"[:40]


def _mib(value: float | None) -> str:
    return "—" if not value else f"{value / MIB:,.0f} MiB"


def _seconds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return "∞" if math.isinf(value) else f"{value:.2f}"


def _refinery(results: list[Result]) -> list[Result]:
    return [r for r in results if r.name.startswith("refinery")]


def comparison_pair(results: list[Result]) -> tuple[Result | None, Result | None]:
    """(the refinery_py run to compare, the Collector run)."""
    collector = next((r for r in results if r.name == "otelcol"), None)
    refinery = _refinery(results)
    for stem in EQUIVALENT_RULES:
        same_rules = [r for r in refinery if Path(r.rules).stem == stem]
        if same_rules:
            return max(same_rules, key=lambda r: (not _front(r), _workers(r))), collector
    return (refinery[0] if refinery else None), collector


FRONT_SUFFIX = "-front"
"""Ends the name of a run whose senders routed by trace ID to the per-worker ports."""


def _front(result: Result) -> bool:
    """Whether the run's senders played a trace-ID-routing front."""
    return result.name.endswith(FRONT_SUFFIX)


def _workers(result: Result) -> int:
    """The --workers count of a refinery_py run (its name ends in -wN or -wN-front), 0 when not
    given."""
    _, _, count = result.name.removesuffix(FRONT_SUFFIX).rpartition("-w")
    return int(count) if count.isdigit() else 0


def _run(results: list[Result], stem: str, workers: int, front: bool = False) -> Result | None:
    """The refinery_py run with this rules file, worker count and routing, if it was measured."""
    return next(
        (
            r
            for r in _refinery(results)
            if Path(r.rules).stem == stem
            and _workers(r) == workers
            and _front(r) == front
            and r.sustained
        ),
        None,
    )


def one_worker_run(results: list[Result], stem: str) -> Result | None:
    """The one-worker run with this rules file (its load rate is the two-worker runs'
    reference)."""
    return _run(results, stem, 1)


def _column(result: Result, context: Context, collector: Result | None) -> list[str]:
    sustained = result.sustained.achieved if result.sustained else None
    load = result.load
    latency = load.step.latency if load else None
    failing = result.failing
    top = result.sustained
    vs_collector = "—"
    if collector is not None and collector is not result and collector.sustained:
        vs_collector = _ratio(sustained, collector.sustained.achieved)
    wire = context.wire_bytes_per_span
    metric = load.bytes_per_span_metric if load else None
    rss = load.bytes_per_span_rss if load else None
    return [
        Path(result.rules).name,
        _rate(sustained),
        _ratio(sustained, result.floor or context.floor.spans_per_second),
        vs_collector,
        _rate(result.probe.achieved if result.probe else None),
        f"{_seconds(latency.p50)} / {_seconds(latency.p99)} s" if latency else "—",
        _rate(load.step.achieved if load else None),
        _mib(load.peak_rss if load else None),
        _mib(result.ramp_peak_rss),
        f"{metric:,.0f} ({metric / wire:.2f}× wire)" if metric else "—",
        f"{rss:,.0f} ({rss / wire:.2f}× wire)" if rss else "—",
        f"{load.cpu_per_100k:.2f}" if load else "—",
        _reference_cpu(load),
        f"{top.server_cores:.2f}/{top.sender_cores:.2f}/{top.sink_cores:.2f}" if top else "—",
        f"{failing.offered / 1000:,.1f}k: {failing.verdict}"[:40] if failing else "none failed",
    ]


ROWS = [
    "rules",
    "sustained spans/s (0 rejects)",
    "  ÷ protobuf floor (its own)",
    "  ÷ collector",
    "flat-out probe, spans/s accepted",
    "decision latency p50 / p99 @80%",
    "  load offered @80%, spans/s",
    "peak RSS @80% (VmHWM)",
    "peak RSS in the ramp (overload)",
    "bytes/buffered span: metric",
    "bytes/buffered span: RSS growth",
    "CPU s / 100k spans @80%",
    "  @ one worker's 80% load",
    "cores server/senders/sink @sust.",
    "step above sustained: offered, why",
]


def table(results: list[Result], context: Context) -> str:
    _, collector = comparison_pair(results)
    columns = [_column(r, context, collector) for r in results]
    headers = [r.label for r in results]
    width = max(24, *(len(cell) + 2 for column in columns for cell in column))
    label = max(map(len, ROWS)) + 2
    lines = ["".ljust(label) + "".join(h.ljust(width) for h in headers)]
    for index, row in enumerate(ROWS):
        lines.append(row.ljust(label) + "".join(col[index].ljust(width) for col in columns))
    return "\n".join(line.rstrip() for line in lines)


def targets(results: list[Result], context: Context) -> list[str]:
    """The issues' targets, each with the measured figure and PASS / FAIL / not measured."""
    lines = []

    def check(name: str, ok: bool | None, detail: str) -> None:
        verdict = "not measured" if ok is None else ("PASS" if ok else "FAIL")
        lines.append(f"  {verdict:12} {name}: {detail}")

    def cpu(result: Result | None) -> float | None:
        return result.load.cpu_per_100k if result is not None and result.load else None

    # Issue 13: CPU per span with the rules people write, and with the shipped ones.
    for stem, limit in ((TRACE_SCOPE, 0.8), (DEFAULT, 0.5)):
        figure = cpu(_run(results, stem, 1))
        check(
            f"{stem}.yaml, one worker: ≤ {limit} CPU-s per 100k spans @80%",
            None if figure is None else figure <= limit,
            "—" if figure is None else f"{figure:.2f}",
        )
    one_trace = _run(results, TRACE_SCOPE, 1)
    one = one_trace.sustained.achieved if one_trace and one_trace.sustained else None
    floor = (one_trace.floor if one_trace else 0.0) or context.floor.spans_per_second
    check(
        "trace-scope.yaml, one worker: sustained ≥ 0.2 × protobuf floor",
        None if one is None else one >= 0.2 * floor,
        f"{_rate(one)} spans/s vs floor {_rate(floor)} = {_ratio(one, floor)}",
    )
    for stem in (TRACE_SCOPE, DEFAULT):
        single = cpu(_run(results, stem, 1))
        for front, how in ((False, "forwarding between them"), (True, "behind a routing front")):
            run = _run(results, stem, 2, front)
            double = cpu(run)
            name = f"{stem}.yaml, two workers {how}: CPU per span within 10% of one worker's"
            if single is None or double is None:
                check(
                    name,
                    None,
                    "needs --workers 1 and --front 2" if front else "needs --workers 1 and 2",
                )
                continue
            own = f"{double:.2f} vs {single:.2f} ({double / single - 1:+.0%})"
            assert run is not None and run.load is not None
            equal = run.load.reference_cpu_per_100k
            if equal is None:  # no phase at one worker's load: compare each at its own 80%
                why = ""
                if run.load.reference is not None:
                    why = f" (at one worker's load: {run.load.reference.verdict})"
                check(name, double <= 1.1 * single, f"{own}, each at its own 80% load{why}")
                continue
            assert run.load.reference is not None
            check(
                name,
                equal <= 1.1 * single,
                f"{equal:.2f} vs {single:.2f} ({equal / single - 1:+.0%}) at one worker's load "
                f"({_rate(run.load.reference.achieved)} spans/s); at its own 80%: {own}",
            )

    # Earlier issues' targets, still held.
    refinery = _refinery(results)
    first = refinery[0] if refinery else None
    two = next((r for r in refinery if _workers(r) == 2 and not _front(r) and r.sustained), None)
    one_worker = next(
        (r for r in refinery if _workers(r) == 1 and two and r.rules == two.rules), None
    )
    if two and one_worker and two.sustained and one_worker.sustained:
        ratio = two.sustained.achieved / one_worker.sustained.achieved
        check(
            f"two workers ≥ 1.7 × one ({Path(two.rules).name})",
            ratio >= 1.7,
            f"{ratio:.2f}×",
        )
    else:
        check("two workers ≥ 1.7 × one", None, "needs runs with --workers 1 and --workers 2")
    mine, theirs = comparison_pair(results)
    if mine and theirs and mine.sustained and theirs.sustained and mine.load and theirs.load:
        speed = mine.sustained.achieved / theirs.sustained.achieved
        memory = mine.load.peak_rss / max(1, theirs.load.peak_rss)
        drift = ""
        if mine.floor and theirs.floor:  # the machine's speed may have changed in between
            drift = f"; {speed * theirs.floor / mine.floor:.2f}× with each ÷ its own floor"
        check(
            "≥ 1.0 × collector sustained at ≤ its peak RSS",
            speed >= 1.0 and memory <= 1.0,
            f"{speed:.2f}× spans/s at {memory:.2f}× peak RSS ({mine.label}, "
            f"{Path(mine.rules).name}{drift})",
        )
    else:
        check("≥ 1.0 × collector sustained at ≤ its peak RSS", None, "needs both runs")
    latency = first.load.step.latency if first and first.load else None
    limit = context.send_delay + 0.25
    check(
        "decision latency p99 ≤ send_delay + 250 ms @80%",
        None if latency is None else latency.p99 <= limit,
        f"p99 {_seconds(latency.p99 if latency else None)} s vs {limit:.2f} s",
    )
    per_span = [
        v
        for r in refinery
        if r.load
        for v in (r.load.bytes_per_span_metric, r.load.bytes_per_span_rss)
        if v
    ]
    check(
        "memory per buffered span ≤ 2 × wire size (every run)",
        None if not per_span else max(per_span) <= 2 * context.wire_bytes_per_span,
        f"at most {max(per_span):,.0f} B (metric or RSS) vs wire "
        f"{context.wire_bytes_per_span:,.0f} B"
        if per_span
        else "—",
    )
    return lines


def render(results: list[Result], context: Context) -> str:
    c = context
    head = [
        f"refinery_py benchmark ({c.mode}) — {c.cpus} CPUs shared by senders, server and sink",
        f"load: OTLP/{c.protocol.upper()} protobuf, {c.sender_processes} sender process(es) × "
        f"{c.connections} connections; {c.payload_spans:,} pre-built spans in "
        f"{c.payload_requests} requests per replay, {c.wire_bytes_per_span:,.0f} B/span on the "
        f"wire; send_delay {c.send_delay:g}s, trace_timeout {c.trace_timeout:g}s",
        f"protobuf floor (upb parse + serialize, same payloads, 1 core, measured before each "
        f"server): {' / '.join(_rate(f) for f in c.floors)} spans/s (parse only "
        f"{_rate(c.floor.parse_spans_per_second)})",
        f"sender ceiling (same senders vs a do-nothing server): "
        f"{_rate(c.ceiling.spans_per_second)} spans/s using {c.ceiling.sender_cores:.2f} cores",
        "",
    ]
    body = [table(results, context), "", "targets:", *targets(results, context)]
    notes = list(c.notes)
    for result in results:
        notes.extend(f"{result.label} ({Path(result.rules).name}): {n}" for n in result.notes)
    if notes:
        body += ["", "notes:", *(f"  - {n}" for n in notes)]
    return "\n".join(head + body)


def write_json(path: Path, results: list[Result], context: Context) -> None:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    document = {"context": asdict(context), "results": [asdict(r) for r in results]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(document), indent=2))
