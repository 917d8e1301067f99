"""Server CPU per request when requests are small, fresh and late, one worker and several.

    .venv/bin/python -m bench.request_cost [--workers 1,2] [--spans 20] [--requests 20000]
        [--connections 8] [--protocol http|grpc] [--rules rules/default.yaml]

The load benchmarks send 512-span requests, where what a request costs beyond its spans hardly
shows. Services that export a few spans at a time (an SDK flushing every few seconds, one
trace of 10-50 spans per request) make tens of thousands of requests a second, and then the
per-request part is most of the bill. This sends `--requests` OTLP protobuf requests (HTTP,
or gRPC with `--protocol grpc`) of about `--spans` spans each (the bench's traffic,
`bench/traffic.py`) as fast as `--connections` keep-alive connections go (the load generator's
clients, a thread each), then, once their traces are decided, sends a fifth of them again: every
span of those is late. For each phase it prints the server's CPU (its whole process tree, from
/proc) per request and per 1,000 spans, the requests per second it answered, how many export
requests it made, and how many requests it refused (429 or RESOURCE_EXHAUSTED, sent again after
the hint, as an SDK would).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import procstat, scrape
from bench.otlp_clients import GrpcClient, HttpClient, http_head
from bench.sink import SinkProcess
from bench.targets import REPO, Refinery, Settings
from bench.traffic import TrafficShape, generate_requests

SEND_DELAY = 2.0


def _send(port: int, bodies: list[bytes], connections: int, protocol: str) -> int:
    """Send every body, each on one of `connections` keep-alive connections (a thread each); a
    refused one (429 or 503, RESOURCE_EXHAUSTED) again after its retry hint, as an SDK would.
    Returns how many refusals there were."""

    def sender(first: int) -> int:
        client = (
            GrpcClient("127.0.0.1", port) if protocol == "grpc" else HttpClient("127.0.0.1", port)
        )
        refused = 0
        try:
            for body in bodies[first::connections]:
                request = body if protocol == "grpc" else http_head(len(body)) + body
                while not (outcome := client.post(request)).accepted:
                    if not outcome.rejected:
                        raise RuntimeError(f"the server failed a request: {outcome.error}")
                    refused += 1
                    time.sleep(min(outcome.retry_after, 1.0))
        finally:
            client.close()
        return refused

    with ThreadPoolExecutor(connections) as pool:
        return sum(pool.map(sender, range(connections)))


def _exports(node: Refinery) -> float:
    page = scrape.fetch(f"http://127.0.0.1:{node.metrics_port}/metrics")
    return scrape.total(page, "refinery_export_requests_total") or 0.0


def _settle(node: Refinery, timeout: float = 60.0) -> None:
    """Wait until what was sent is decided and exported (the server's own metrics say so)."""
    deadline = time.monotonic() + timeout
    time.sleep(SEND_DELAY)
    while not node.backlog().drained:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server still holds spans after {timeout:.0f} s")
        time.sleep(0.2)
    time.sleep(node.settle_seconds)  # the last export request in flight


def _phase(
    node: Refinery, label: str, bodies: list[bytes], spans: int, *, connections: int, protocol: str
) -> str:
    exports = _exports(node)
    cpu = procstat.tree_usage(node.pid).cpu_seconds
    started = time.monotonic()
    refused = _send(node.ingest_port, bodies, connections, protocol)
    seconds = time.monotonic() - started
    cpu = procstat.tree_usage(node.pid).cpu_seconds - cpu
    _settle(node)
    exports = _exports(node) - exports
    return (
        f"  {label:<6} {cpu / len(bodies) * 1e6:7.0f} µs per request, "
        f"{cpu / spans * 1e9:6.0f} µs per 1,000 spans, {len(bodies) / seconds:8,.0f} requests/s, "
        f"{exports:,.0f} export requests, {refused:,} refusals (retried)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--workers", default="1,2", help="server configurations, in turn (serve --workers N)")
    add("--spans", type=int, default=20, help="spans per request (about)")
    add("--requests", type=int, default=20_000)
    add("--connections", type=int, default=8)
    add("--protocol", choices=("http", "grpc"), default="http")
    add("--rules", type=Path, default=REPO / "rules" / "default.yaml")
    args = parser.parse_args()
    if not args.rules.is_file():
        parser.error(f"no rules file at {args.rules}")
    shape = TrafficShape(spans_per_request=args.spans, seed=11)
    average_trace = (shape.min_spans + shape.max_spans) / 2
    traces = max(1, round(args.requests * args.spans / average_trace))
    bodies = list(generate_requests(traces, shape))
    warm = list(generate_requests(500, TrafficShape(spans_per_request=args.spans, seed=12)))
    late = bodies[: len(bodies) // 5]
    spans = args.spans * len(bodies)
    print(f"{len(bodies):,} requests of about {args.spans} spans; then {len(late):,} again, late")
    sink = SinkProcess()
    folder = REPO / "bench" / "results" / f"request-cost-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    settings = Settings(args.protocol, sink.port, SEND_DELAY, 10.0, "none", folder)
    try:
        for workers in (int(w) for w in args.workers.split(",")):
            node = Refinery(settings, args.rules.resolve(), workers)
            node.start()
            try:
                _send(node.ingest_port, warm, args.connections, args.protocol)
                print(f"--workers {workers}")
                for label, sent, count in (
                    ("fresh", bodies, spans),
                    ("late", late, args.spans * len(late)),
                ):
                    print(
                        _phase(
                            node,
                            label,
                            sent,
                            count,
                            connections=args.connections,
                            protocol=args.protocol,
                        )
                    )
            finally:
                node.stop(60)
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
