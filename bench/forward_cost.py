"""CPU per span of what forwarding between two workers adds, step by step, in one process.

    .venv/bin/python -m bench.forward_cost [--traces 4000] [--repeat 7] [--workers 2]

With `serve --workers N`, every worker splits its requests by owner and sends the other workers'
spans to them; each owner checks that what it got is its own before buffering it. This runs those
steps on the bench's traffic (`bench/traffic.py`, split as a front door splits it) with the
forwarder's own code, without the sockets in between:

- route at the front door: `Forwarder.route`, every span (queues the others' parts);
- encode: the queued parts joined into request bodies, as a link sends them;
- decode: those bodies read back at the owning worker's peer door;
- route at the owner: its own check of the spans it was sent.

Prints microseconds per span for each step (per span of the traffic for the first, per
forwarded span for the others) and what the steps add per span of the traffic, so that
`equal_load`'s gap between one worker and two can be set against it. Medians of `--repeat`
runs, CPU time of this process.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from bench.traffic import TrafficShape, generate_requests
from refinery_py.app import tune_allocator
from refinery_py.cluster.forwarding import Forwarder
from refinery_py.cluster.link import REQUEST_MAX_BYTES, Outgoing, encode_items
from refinery_py.cluster.ownership import Placement
from refinery_py.model import SpanBatch
from refinery_py.otlp.batch_codec import decode_span_batches
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.telemetry import Metrics


def _cpu(step: Callable[[], object], repeat: int) -> float:
    """Median CPU seconds of `step`."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        step()
        times.append(time.process_time() - started)
    return statistics.median(times)


def _forwarder(worker: int, workers: int) -> Forwarder:
    doors = tuple(f"unix:/nonexistent/worker-{n}" for n in range(workers))
    return Forwarder(
        Placement.single("node:1", workers, worker),
        sibling_doors=doors,
        metrics=Metrics(),
        queue_max_bytes=1 << 40,
        max_wait=1e9,
    )


def _requests(items: list[Outgoing]) -> list[list[Outgoing]]:
    """Queued items grouped into requests of up to REQUEST_MAX_BYTES, as a link groups them."""
    requests: list[list[Outgoing]] = []
    size = REQUEST_MAX_BYTES
    for item in items:
        if size + item.size > REQUEST_MAX_BYTES:
            requests.append([])
            size = 0
        requests[-1].append(item)
        size += item.size
    return requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tune_allocator()  # as a worker does: large buffers stay in the heap
    interner = OriginInterner()
    requests = list(generate_requests(args.traces, TrafficShape(seed=7)))
    spans = sum(split_request(body, interner).span_count for body in requests)
    front = _forwarder(0, args.workers)
    owners = [_forwarder(n, args.workers) for n in range(1, args.workers)]
    queued: list[list[list[Outgoing]]] = []

    def split_and_route() -> float:
        """CPU seconds of the routing alone, each request routed as a front door routes it:
        right after its split, while it is in the caches. Timed call by call, since the split
        around it costs three times as much and would swamp a difference of totals."""
        routing = 0.0
        for body in requests:
            batch = split_request(body, interner)
            started = time.process_time()
            front.route(batch)
            routing += time.process_time() - started
        queued[:] = [_requests(link.retire_queue()) for link in front.links().values()]
        return routing

    route_seconds = statistics.median(split_and_route() for _ in range(args.repeat))
    forwarded = sum(item.spans for requests in queued for items in requests for item in items)
    bodies: list[list[bytes]] = []

    def send() -> None:
        bodies[:] = [[encode_items(items) for items in requests] for requests in queued]

    send_seconds = _cpu(send, args.repeat)
    decoded: list[list[SpanBatch]] = []

    def decode() -> None:
        decoded[:] = [[decode_span_batches(body, interner) for body in some] for some in bodies]

    decode_seconds = _cpu(decode, args.repeat)

    def route_owner() -> None:
        for owner, batches_in in zip(owners, decoded, strict=True):
            for batch in batches_in:
                routed = owner.route(batch, hops=1)
                assert routed.local.span_count == batch.span_count, "the owner keeps its own"

    owner_seconds = _cpu(route_owner, args.repeat)
    print(
        f"traffic: {args.traces} traces, {spans} spans in {len(requests)} requests, "
        f"{args.workers} workers: {forwarded} spans forwarded ({forwarded / spans:.0%})"
    )
    rows = (
        ("route and queue at the front door (per span)", route_seconds, spans),
        ("request bodies (per forwarded span)", send_seconds, forwarded),
        ("decode (per forwarded span)", decode_seconds, forwarded),
        ("route at the owner (per forwarded span)", owner_seconds, forwarded),
    )
    for label, seconds, count in rows:
        print(f"{label:<48}{seconds / count * 1e6:8.3f} µs")
    added = route_seconds + send_seconds + decode_seconds + owner_seconds
    print(f"{'added per span of the traffic':<48}{added / spans * 1e6:8.3f} µs")
    print(f"{'added CPU-s per 100k spans':<48}{added / spans * 1e5:8.3f}")


if __name__ == "__main__":
    main()
