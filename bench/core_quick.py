"""In-process throughput of the core path, no network: split → buffer → decide → encode.

    .venv/bin/python -m bench.core_quick [--traces 4000] [--rules rules/default.yaml]

Feeds pre-built requests (bench/traffic.py) straight into a Pipeline whose exporter discards
what it is offered, then decides everything. Prints spans per CPU-second (this process's CPU
time, so other work on the machine matters less than with a wall clock) for the whole core and
for each stage measured alone, so a regression can be placed, and the core's CPU-seconds per
100k spans.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.traffic import TrafficShape, generate_requests
from refinery_py.app import tune_allocator
from refinery_py.assemble import DecisionCache, TraceBuffer
from refinery_py.config.rules import load_rules
from refinery_py.decide.engine import RulesEngine
from refinery_py.model import KeptTrace
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.pipeline import Pipeline
from refinery_py.telemetry import Metrics


class Discard:
    """An exporter that counts and forgets."""

    def __init__(self) -> None:
        self.spans = 0

    def offer(self, trace: KeptTrace) -> None:
        self.spans += trace.span_count

    async def start(self) -> None:
        return None

    async def close(self, timeout: float) -> None:
        return None


def discarding_pipeline(
    rules: str | Path, clock: list[float], exporter: Discard | None = None
) -> Pipeline:
    """A Pipeline on the bench's settings whose exporter discards, on the clock `clock[0]`."""
    return Pipeline(
        buffer=TraceBuffer(
            send_delay=2.0,
            trace_timeout=60.0,
            span_limit=32000,
            decisions=DecisionCache(120.0, 256 << 20),
        ),
        decider=RulesEngine(load_rules(rules)),
        exporters=[exporter or Discard()],
        metrics=Metrics(),
        customer_fields=("customer.id",),
        max_memory=8 << 30,
        clock=lambda: clock[0],
    )


def warm_up(pipeline: Pipeline, interner: OriginInterner, clock: list[float]) -> None:
    """Steady state first: what the pipeline learns from deciding (which questions rules ask,
    whether marking spans as they arrive pays) is learned from other traffic, every trace an
    error, so that no sampler's state moves before the measured traffic. Moves the clock on
    100 s, past every deadline of that traffic."""
    for body in generate_requests(300, TrafficShape(seed=8, error_fraction=1.0)):
        pipeline.accept_owned(split_request(body, interner), "bench")
    clock[0] += 100.0
    pipeline.decide_due()
    assert not pipeline.buffer.traces, "the warm-up traffic is decided"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=4000)
    parser.add_argument("--rules", default="rules/default.yaml")
    args = parser.parse_args()
    tune_allocator()
    requests = list(generate_requests(args.traces, TrafficShape(seed=7)))
    total_bytes = sum(map(len, requests))
    interner = OriginInterner()
    batches = [split_request(body, interner) for body in requests]
    spans = sum(b.span_count for b in batches)
    print(f"traffic: {args.traces} traces, {spans} spans, {total_bytes / spans:.0f} B/span")

    started = time.process_time()
    for body in requests:
        split_request(body, interner)
    split_seconds = time.process_time() - started

    started = time.process_time()
    for body in requests:
        split_request(body, interner, validate=False)
    scan_seconds = time.process_time() - started

    clock = [0.0]
    exporter = Discard()
    pipeline = discarding_pipeline(args.rules, clock, exporter)
    warm_up(pipeline, interner, clock)
    warm_kept = exporter.spans
    started = time.process_time()
    for body in requests:
        pipeline.accept(split_request(body, interner), "bench")
    accept_seconds = time.process_time() - started
    clock[0] = 1100.0
    started = time.process_time()
    pipeline.decide_due()
    decide_seconds = time.process_time() - started
    assert not pipeline.buffer.traces, "every trace decided"

    def rate(seconds: float) -> str:
        return f"{spans / seconds / 1000:8.0f} k spans/s"

    print(f"validate + scan (split_request)           {rate(split_seconds)}")
    print(f"wire scan only                            {rate(scan_seconds)}")
    print(f"accept (split + buffer)                   {rate(accept_seconds)}")
    print(f"decide + encode kept                      {rate(decide_seconds)}")
    print(f"core end to end                           {rate(accept_seconds + decide_seconds)}")
    core = (accept_seconds + decide_seconds) / spans * 1e5
    print(f"core CPU-seconds per 100k spans           {core:8.3f}")
    kept = exporter.spans - warm_kept
    print(f"kept: {kept} spans ({kept / spans:.1%})")


if __name__ == "__main__":
    main()
