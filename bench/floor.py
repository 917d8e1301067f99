"""The protobuf floor: how fast this machine parses and re-serializes the benchmark's payloads.

    .venv/bin/python -m bench.floor [--traces 1000] [--seed 1000]

For every request of the payload set: `ExportTraceServiceRequest.FromString` (upb) then
`SerializeToString` of the parsed message; spans/s over the whole set, the best of as many rounds
as fit in `seconds` (at least 3: single rounds on this machine vary by ±20%), on one core, in a
fresh process with the allocator tuned as the server tunes its own. A pipeline
that must at least read and write every span cannot beat this with the same library, so the
benchmark reports end-to-end throughput as a fraction of it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from dataclasses import dataclass

from bench import allocator
from bench.payloads import load


@dataclass(frozen=True)
class Floor:
    spans_per_second: float
    parse_spans_per_second: float
    """Parsing alone, for reference."""


def _measure(traces: int, seeds: list[int], seconds: float) -> Floor:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    allocator.tune()
    bodies: list[bytes] = []
    spans = 0
    for seed in seeds:
        payloads = load(traces, seed)
        bodies.extend(payloads.bodies)
        spans += payloads.spans
    parse = ExportTraceServiceRequest.FromString
    best_both = best_parse = float("inf")
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < 3 or time.perf_counter() < deadline:
        rounds += 1
        started = time.perf_counter()
        for body in bodies:
            parse(body).SerializeToString()
        best_both = min(best_both, time.perf_counter() - started)
        started = time.perf_counter()
        for body in bodies:
            parse(body)
        best_parse = min(best_parse, time.perf_counter() - started)
    return Floor(spans / best_both, spans / best_parse)


def measure(traces: int, seeds: list[int], seconds: float = 2.0) -> Floor:
    """The floor over the given payload sets, measured in a fresh process for `seconds`."""
    with mp.get_context("spawn").Pool(1) as pool:
        floor: Floor = pool.apply(_measure, (traces, seeds, seconds))
        return floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    floor = measure(args.traces, [args.seed])
    print(f"parse + serialize: {floor.spans_per_second:,.0f} spans/s")
    print(f"parse only:        {floor.parse_spans_per_second:,.0f} spans/s")


if __name__ == "__main__":
    main()
