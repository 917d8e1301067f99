"""The benchmark's trace-ID-routing front: how it splits requests, and how its runs are reported."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.ceiling import Ceiling
from bench.floor import Floor
from bench.payloads import route_of, split_by_route, trace_id_offsets
from bench.ramp import Load, Result, Step
from bench.report import Context, comparison_pair, targets
from bench.run import reference_rate
from bench.targets import Refinery, Settings
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


def _step() -> Step:
    return Step("s", 1e5, 1e5, 10**6, 0, 0, [], 0.0, 10.0, 1.0, 0.1, 0.1, 0.0, 7.0, 4.0, 0.1, 1e4)


def _measured(name: str, rules: str, cpu: float) -> Result:
    step = _step()
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
    lines = [
        line for line in targets(results, _context()) if "trace-scope.yaml, two workers" in line
    ]

    assert len(lines) == 2
    forwarding = next(line for line in lines if "forwarding between them" in line)
    front = next(line for line in lines if "behind a routing front" in line)
    assert forwarding.split()[0] == "FAIL" and "1.05 vs 0.70 (+50%)" in forwarding
    assert front.split()[0] == "PASS" and "0.74 vs 0.70 (+6%)" in front
    # Compared with the Collector: the run with the most workers that forwards (the default).
    assert comparison_pair(results)[0] is results[1]


def _context() -> Context:
    return Context(
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


def test_two_workers_are_judged_at_one_workers_load_when_measured_there() -> None:
    rules = str(Path("rules/default.yaml"))
    one = _measured("refinery-default-w1", rules, 0.60)
    forwarding = _measured("refinery-default-w2", rules, 1.10)
    front = _measured("refinery-default-w2-front", rules, 0.70)
    held = replace(_step(), offered=90_000.0, achieved=90_000.0, server_cpu_seconds=5.94)
    assert front.load is not None and forwarding.load is not None
    front.load.reference = held  # 5.94 CPU-s for 10**6 spans: 0.594 per 100k
    forwarding.load.reference = replace(held, verdict="12 requests rejected")

    lines = targets([one, forwarding, front], _context())

    front_line = next(line for line in lines if "default.yaml, two workers behind" in line)
    assert front_line.split()[0] == "PASS"
    assert "0.59 vs 0.60 (-1%) at one worker's load (90,000 spans/s)" in front_line
    assert "at its own 80%: 0.70 vs 0.60 (+17%)" in front_line
    forwarding_line = next(line for line in lines if "default.yaml, two workers forw" in line)
    assert forwarding_line.split()[0] == "FAIL"
    assert "1.10 vs 0.60 (+83%), each at its own 80% load" in forwarding_line
    assert "12 requests rejected" in forwarding_line


def test_only_runs_of_more_than_one_worker_get_the_one_worker_load_as_reference(
    tmp_path: Path,
) -> None:
    rules = Path("rules/default.yaml").resolve()
    one = _measured("refinery-default-w1", str(rules), 0.60)
    assert one.load is not None
    one.load.step = replace(_step(), offered=123_000.0)
    settings = Settings("http", 1, 2.0, 10.0, "none", tmp_path)

    def rate(
        workers: int, *, front: bool = False, results: list[Result] | None = None
    ) -> float | None:
        target = Refinery(settings, rules, workers, front=front)
        return reference_rate([one] if results is None else results, target)

    assert rate(2) == 123_000.0
    assert rate(2, front=True) == 123_000.0
    assert rate(1) is None
    assert rate(2, results=[]) is None
    other_rules = Refinery(settings, Path("bench/rules/trace-scope.yaml").resolve(), 2)
    assert reference_rate([one], other_rules) is None
