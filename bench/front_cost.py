"""CPU per span of the core when a trace-ID-routing front splits the traffic over workers, in one
process.

    .venv/bin/python -m bench.front_cost [--traces 8000] [--workers 2] [--rounds 4]
        [--rules bench/rules/trace-scope.yaml]

Behind a front (`listen.otlp_*_per_worker`), each of N workers gets every request's share of
the traces it owns and forwards nothing, so each runs the same core (split, buffer, decide,
encode what is kept) on 1/N of the traffic, in requests 1/N the size. This feeds the bench's
traffic (`bench/traffic.py`) once to one pipeline whole, and once split as the senders' front
splits it (`bench/payloads.split_by_route`) to N pipelines, each with its own interner, deciding
every 40 requests as a ticker would, and prints the CPU-seconds per 100k spans of each, in
alternating rounds, with their medians. If N pipelines cost no more than one here, what
`bench.equal_load` measures between one worker and N behind a front is not in the core but in
the processes around it: the event loop, the sockets, the scheduler.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

from bench.core_quick import discarding_pipeline, warm_up
from bench.payloads import split_by_route
from bench.targets import REPO
from bench.traffic import TrafficShape, generate_requests
from refinery_py.app import tune_allocator
from refinery_py.otlp.ingest import OriginInterner, split_request

REQUESTS_PER_TICK = 40
"""Requests between two decision ticks (with 512-span requests, about a tick's worth at 400k
spans/s; what matters is that both configurations tick alike)."""


def run(rules: Path, requests: list[list[bytes]]) -> float:
    """CPU-seconds per 100k spans of as many pipelines as each request has parts, each fed its
    part of every request (one part: one pipeline, the whole request)."""
    workers = len(requests[0])
    clock = [0.0]
    pipelines = [discarding_pipeline(rules, clock) for _ in range(workers)]
    interners = [OriginInterner() for _ in range(workers)]
    for pipeline, interner in zip(pipelines, interners, strict=True):
        warm_up(pipeline, interner, clock)
    spans = 0
    started = time.process_time()
    for first in range(0, len(requests), REQUESTS_PER_TICK):
        for parts in requests[first : first + REQUESTS_PER_TICK]:
            for pipeline, interner, part in zip(pipelines, interners, parts, strict=True):
                if part:
                    batch = split_request(part, interner)
                    spans += batch.span_count
                    pipeline.accept_owned(batch, "bench")
        clock[0] += 3.0  # every trace is due by the next tick: each is decided once
        for pipeline in pipelines:
            pipeline.decide_due()
    seconds = time.process_time() - started
    assert all(not pipeline.buffer.traces for pipeline in pipelines), "every trace decided"
    return seconds / spans * 1e5


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traces", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--rules", type=Path, default=REPO / "bench" / "rules" / "trace-scope.yaml")
    args = parser.parse_args()
    if args.workers < 2:
        parser.error("--workers must be at least 2")
    tune_allocator()  # as a worker does
    bodies = list(generate_requests(args.traces, TrafficShape(seed=7)))
    whole = [[body] for body in bodies]
    split = [split_by_route(body, args.workers) for body in bodies]
    labels = ("one pipeline", f"{args.workers} behind a front")
    results: dict[str, list[float]] = {label: [] for label in labels}
    # Each tick jumps the clock by 3 s, which the throughput samplers read as windows whose goal
    # was out of reach; their warnings say nothing about cost.
    logger = logging.getLogger("refinery_py")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        for number in range(1, args.rounds + 1):
            for label, requests in zip(labels, (whole, split), strict=True):
                results[label].append(run(args.rules, requests))
                print(f"round {number} {label}: {results[label][-1]:.3f} CPU-s per 100k spans")
    finally:
        logger.setLevel(level)
    one, front = (statistics.median(results[label]) for label in labels)
    print(f"median: one pipeline {one:.3f}, {labels[1]} {front:.3f} ({front / one - 1:+.0%})")


if __name__ == "__main__":
    main()
