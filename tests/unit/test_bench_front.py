"""The benchmark's trace-ID-routing front: how it splits requests, and how its runs are reported."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.ceiling import Ceiling
from bench.floor import Floor
from bench.payloads import route_of, split_by_route, trace_id_offsets
from bench.ramp import Load, Result, Step
from bench.report import Context, comparison_pair, targets
from bench.traffic import TrafficShape, generate_requests


def _spans(body: bytes) -> Counter[tuple[bytes, bytes, bytes]]:
    """Each span with the resource and scope it came under, serialized, as a multiset."""
    request = ExportTraceServiceRequest.FromString(body)
    return Counter(
        (
            resource_spans.resource.SerializeToString(),
            scope_spans.scope.SerializeToString(),
            span.SerializeToString(),
        )
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    )


@pytest.mark.parametrize("routes", [2, 3])
def test_a_request_is_split_by_trace_id_with_nothing_lost_or_moved(routes: int) -> None:
    bodies = list(generate_requests(60, TrafficShape(seed=7, spans_per_request=128)))
    assert len(bodies) > 3
    for body in bodies:
        parts = split_by_route(body, routes)

        assert len(parts) == routes
        merged: Counter[tuple[bytes, bytes, bytes]] = Counter()
        for route, part in enumerate(parts):
            spans = _spans(part)
            merged += spans
            request = ExportTraceServiceRequest.FromString(part) if part else None
            trace_ids = (
                [
                    s.trace_id
                    for rs in request.resource_spans
                    for ss in rs.scope_spans
                    for s in ss.spans
                ]
                if request
                else []
            )
            assert {route_of(trace_id, routes) for trace_id in trace_ids} <= {route}
            # The replays rewrite trace IDs at these offsets: one per span, in every part.
            assert [part[o : o + 16] for o in trace_id_offsets(part)] == trace_ids
        assert merged == _spans(body)


def test_every_route_gets_traces_and_a_trace_keeps_its_route_across_replays() -> None:
    body = next(generate_requests(200, TrafficShape(seed=3)))
    parts = split_by_route(body, 2)

    assert all(parts), "200 traces' first request has spans for both workers"
    prefix = bytes(range(12))
    assert {route_of(prefix + epoch.to_bytes(4, "big"), 2) for epoch in range(50)} == {
        route_of(prefix, 2)
    }


def _measured(name: str, rules: str, cpu: float) -> Result:
    step = Step("s", 1e5, 1e5, 10**6, 0, 0, [], 0.0, 10.0, 1.0, 0.1, 0.1, 0.0, 7.0, 4.0, 0.1, 1e4)
    result = Result(label=name, name=name, rules=rules, sustained=step)
    result.load = Load(step, 1, 1.0, 1, None, None, None, None, cpu_per_100k=cpu)
    return result


def test_two_workers_are_judged_apart_with_forwarding_and_behind_a_front() -> None:
    rules = str(Path("bench/rules/trace-scope.yaml"))
    results = [
        _measured("refinery-trace-scope-w1", rules, 0.70),
        _measured("refinery-trace-scope-w2", rules, 1.05),
        _measured("refinery-trace-scope-w2-front", rules, 0.74),
    ]
    context = Context(
        cpus=2,
        protocol="http",
        sender_processes=1,
        connections=32,
        payload_spans=1000,
        payload_requests=2,
        wire_bytes_per_span=1000.0,
        send_delay=2.0,
        trace_timeout=10.0,
        floor=Floor(300_000.0, 500_000.0),
        floors=[300_000.0],
        ceiling=Ceiling(2e6, 1.0, 0.1),
        mode="full",
    )

    lines = [line for line in targets(results, context) if "trace-scope.yaml, two workers" in line]

    assert len(lines) == 2
    forwarding = next(line for line in lines if "forwarding between them" in line)
    front = next(line for line in lines if "behind a routing front" in line)
    assert forwarding.split()[0] == "FAIL" and "1.05 vs 0.70 (+50%)" in forwarding
    assert front.split()[0] == "PASS" and "0.74 vs 0.70 (+6%)" in front
    # Compared with the Collector: the run with the most workers that forwards (the default).
    assert comparison_pair(results)[0] is results[1]
