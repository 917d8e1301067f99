"""The embedded store under a day of kept traces: insert throughput, then query latency.

    .venv/bin/python -m bench.store_bench [--traces 1000000] [--big-share 0.1] [--dir DIR]

Loads `--traces` kept traces through the real `StoreExporter` (bounded queue, writer thread,
batched transactions), with start times spread over the last 24 h, one customer getting
`--big-share` of them (100,000 of a million) and the rest Zipf-distributed over 999 others.
Each trace is a realistic kept trace from bench/traffic.py (8-40 attribute-rich spans), encoded
and annotated by the pipeline's own codec; to keep the generator out of the measurement, a few
hundred such traces are built once and stamped with a fresh trace ID, start time and customer
per trace (their bytes patched in place). About 9 % of kept traces are errors and 4 % flagged
(both kept at rate 1), the rest kept 1 in 10, which is what the default rules keep.

Then the query API is served over HTTP on loopback, and each query shape is timed from the
client, for the big customer: the list's first page, its errors, its slow traces, a page at a
random time and the page after it, summaries over 24 h and 1 h, a trace with its spans, and the
customer list. A few list queries also run during the load. Prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from bench.traffic import SERVICES, TraceFactory, TrafficShape, _resource
from refinery_py.api.query_json import format_time
from refinery_py.api.query_routes import QueryHandlers, query_routes
from refinery_py.api.server import ApiServer
from refinery_py.app import tune_allocator
from refinery_py.model import Decision, KeptTrace, Origin, SendReason
from refinery_py.otlp.frame import encode_kept_trace
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.otlp.wire import LEN, iter_fields
from refinery_py.store import StoreExporter, StoreReader
from refinery_py.telemetry import Metrics

DAY_NS = 86_400 * 10**9
BIG_CUSTOMER = "cust-00000"
CUSTOMER_SENTINEL = b"cust-#####"  # same width as cust-NNNNN, so patching keeps the framing
_U64 = struct.Struct("<Q")
TEMPLATE_START_NS = 10**18
"""Templates start here (not at 0: protobuf leaves zero times out of the wire, unpatchable)."""


@dataclass
class Template:
    """A kept trace's payload with the places a new trace ID and start time go."""

    payload: bytes
    span_count: int
    decision: Decision
    trace_id_at: list[int]
    times_at: list[tuple[int, int]]  # (offset, nanoseconds after the trace's start)


def build_templates(count: int, seed: int) -> list[Template]:
    shape = TrafficShape(seed=seed, error_fraction=0.09, flagged_fraction=0.045, health_fraction=0)
    factory = TraceFactory(shape)
    resources = {service: _resource(service, i) for i, service in enumerate(SERVICES)}
    interner = OriginInterner()
    templates = []
    for _ in range(count):
        spans, meta = factory.trace(TEMPLATE_START_NS)
        for _, span in spans:
            for attribute in span.attributes:
                if attribute.key == "customer.id":
                    attribute.value.string_value = CUSTOMER_SENTINEL.decode()
        raw: list[bytes] = []
        origins: list[Origin] = []
        for service in SERVICES:
            mine = [span for s, span in spans if s == service]
            if mine:
                body = ExportTraceServiceRequest(
                    resource_spans=[
                        ResourceSpans(
                            resource=resources[service], scope_spans=[ScopeSpans(spans=mine)]
                        )
                    ]
                ).SerializeToString()
                batch = split_request(body, interner)
                raw += batch.spans
                origins += batch.origins
        root = next(i for i, s in enumerate(raw) if not Span.FromString(s).parent_span_id)
        if meta["error"] or meta["flagged"]:
            reason = "rules/trace/keep errors" if meta["error"] else "rules/trace/keep flagged"
            decision = Decision(True, 1, reason)
        else:
            decision = Decision(True, 10, "rules/trace/sample the rest")
        payload = encode_kept_trace(raw, origins, root, decision, SendReason.GOT_ROOT.value)
        templates.append(_locate(payload, len(raw), decision))
    return templates


def _locate(payload: bytes, span_count: int, decision: Decision) -> Template:
    """Find each span's trace ID and start/end time fields in an encoded request."""
    ids: list[int] = []
    times: list[tuple[int, int]] = []

    def children(start: int, end: int, number: int) -> list[tuple[int, int]]:
        return [
            (s, e)
            for f, wt, _, s, e in iter_fields(payload, start, end)
            if f == number and wt == LEN
        ]

    for rs_start, rs_end in children(0, len(payload), 1):
        for ss_start, ss_end in children(rs_start, rs_end, 2):
            for sp_start, sp_end in children(ss_start, ss_end, 2):
                for field, _, _, start, _ in iter_fields(payload, sp_start, sp_end):
                    if field == 1:
                        ids.append(start)
                    elif field in (7, 8):  # start/end_time_unix_nano, fixed64
                        delta = _U64.unpack_from(payload, start)[0] - TEMPLATE_START_NS
                        times.append((start, delta))
    return Template(payload, span_count, decision, ids, times)


def stamp(template: Template, trace_id: bytes, start_ns: int, customer: str) -> bytes:
    buffer = bytearray(template.payload.replace(CUSTOMER_SENTINEL, customer.encode()))
    for offset in template.trace_id_at:
        buffer[offset : offset + 16] = trace_id
    for offset, delta in template.times_at:
        _U64.pack_into(buffer, offset, start_ns + delta)
    return bytes(buffer)


@dataclass
class Timings:
    samples: dict[str, list[float]]

    def add(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(seconds)


async def timed_get(
    session: aiohttp.ClientSession, url: str, timings: Timings, name: str
) -> dict[str, object]:
    started = time.perf_counter()
    async with session.get(url) as response:
        body: dict[str, object] = await response.json()
        assert response.status == 200, body
    timings.add(name, time.perf_counter() - started)
    return body


async def load(
    store: StoreExporter,
    *,
    templates: list[Template],
    traces: int,
    big_share: float,
    now_ns: int,
    probe: asyncio.Event,
) -> tuple[float, int, list[bytes]]:
    rng = random.Random(11)
    others = [f"cust-{i:05d}" for i in range(1, 1000)]
    cumulative = []
    total = 0.0
    for rank in range(1, 1000):
        total += 1.0 / rank**1.2
        cumulative.append(total)
    sample_ids: list[bytes] = []
    spans = 0
    started = time.perf_counter()
    for index in range(traces):
        while store.queued_bytes > 48 << 20:  # stay under the queue bound: never drop
            await asyncio.sleep(0.002)
        template = templates[rng.randrange(len(templates))]
        if rng.random() < big_share:
            customer = BIG_CUSTOMER
        else:
            customer = rng.choices(others, cum_weights=cumulative)[0]
        trace_id = rng.randbytes(16)
        start_ns = now_ns - DAY_NS + index * DAY_NS // traces
        payload = stamp(template, trace_id, start_ns, customer)
        store.offer(
            KeptTrace(
                trace_id,
                payload,
                template.span_count,
                template.decision,
                SendReason.GOT_ROOT,
                customer,
            )
        )
        spans += template.span_count
        if customer == BIG_CUSTOMER and len(sample_ids) < 5000 and rng.random() < 0.05:
            sample_ids.append(trace_id)
        if index % 1000 == 999:
            await asyncio.sleep(0)
        if index == traces // 2:
            probe.set()
    await store.close(600.0)
    return time.perf_counter() - started, spans, sample_ids


async def probe_during_load(
    session: aiohttp.ClientSession, base: str, timings: Timings, start: asyncio.Event
) -> None:
    await start.wait()
    url = f"{base}/api/v1/traces?customer={BIG_CUSTOMER}&limit=50"
    for _ in range(40):
        await timed_get(session, url, timings, "list first page, during load")
        await asyncio.sleep(0.25)


async def query_shapes(
    session: aiohttp.ClientSession, base: str, timings: Timings, ids: list[bytes], now_ns: int
) -> None:
    rng = random.Random(5)
    traces = f"{base}/api/v1/traces?customer={BIG_CUSTOMER}&limit=50"
    summary = f"{base}/api/v1/customers/{BIG_CUSTOMER}/summary"
    for _ in range(200):
        await timed_get(session, traces, timings, "list first page")
        await timed_get(session, traces + "&error=true", timings, "list errors")
        await timed_get(session, traces + "&min_duration_ms=390", timings, "list slow (>=390ms)")
        until = format_time(now_ns - rng.randrange(DAY_NS))
        page = await timed_get(session, f"{traces}&until={until}", timings, "list at random time")
        cursor = page["next_cursor"]
        if isinstance(cursor, str):
            await timed_get(session, f"{traces}&cursor={cursor}", timings, "list next page")
        trace_id = rng.choice(ids).hex()
        await timed_get(session, f"{base}/api/v1/traces/{trace_id}", timings, "trace with spans")
        await timed_get(session, summary + "?since=1h", timings, "summary 1h")
    for _ in range(40):
        await timed_get(session, summary + "?since=24h", timings, "summary 24h")
    for _ in range(5):
        await timed_get(session, f"{base}/api/v1/customers?since=24h", timings, "customers 24h")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run(args: argparse.Namespace, directory: Path) -> None:
    path = directory / "traces.db"
    print(f"building {args.templates} trace templates ...", flush=True)
    templates = build_templates(args.templates, seed=3)
    mean_spans = sum(t.span_count for t in templates) / len(templates)
    mean_bytes = sum(len(t.payload) for t in templates) / len(templates)
    print(f"templates: {mean_spans:.1f} spans, {mean_bytes / 1024:.1f} KiB per kept trace")
    now_ns = time.time_ns()
    store = StoreExporter(
        path, metrics=Metrics(), retention=7 * 86400.0, max_size=1 << 40, queue_max_bytes=64 << 20
    )
    await store.start()
    reader = StoreReader(path)
    server = ApiServer("127.0.0.1", 0, query_routes(QueryHandlers(reader)))
    await server.start()
    timings = Timings({})
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as session:
            probe = asyncio.Event()
            prober = asyncio.create_task(probe_during_load(session, base, timings, probe))
            print(f"loading {args.traces:,} traces into {path} ...", flush=True)
            seconds, spans, ids = await load(
                store,
                templates=templates,
                traces=args.traces,
                big_share=args.big_share,
                now_ns=now_ns,
                probe=probe,
            )
            await prober
            size = path.stat().st_size
            print(
                f"\nload: {args.traces:,} traces ({spans:,} spans) in {seconds:.1f} s = "
                f"{args.traces / seconds:,.0f} traces/s, {spans / seconds:,.0f} spans/s; "
                f"file {size / 2**30:.2f} GiB ({size / args.traces:,.0f} B/trace)\n"
            )
            await query_shapes(session, base, timings, ids, now_ns)
    finally:
        await server.stop()
        await reader.aclose()
    print(f"queries for {BIG_CUSTOMER} (~{args.big_share * args.traces:,.0f} traces in 24 h):")
    print(f"{'query':32} {'runs':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in timings.samples.items():
        print(
            f"{name:32} {len(values):5d} {percentile(values, 0.5) * 1e3:8.1f} "
            f"{percentile(values, 0.99) * 1e3:8.1f} {max(values) * 1e3:8.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--big-share", type=float, default=0.1)
    parser.add_argument("--templates", type=int, default=300)
    parser.add_argument("--dir", help="where to put the store (default: a temporary directory)")
    args = parser.parse_args()
    tune_allocator()
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args, Path(args.dir)))
    else:
        with tempfile.TemporaryDirectory(prefix="store-bench-") as directory:
            asyncio.run(run(args, Path(directory)))


if __name__ == "__main__":
    main()
