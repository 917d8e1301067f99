"""Every span handed to the exporter ends under exactly one outcome, whatever the backend does."""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest

from refinery_py.telemetry import Metrics

from .backends import GrpcBackend, GrpcReply, HttpBackend, HttpReply, RecordingBackend
from .builders import kept_trace
from .harness import exporter_for, span_outcomes


def _script_faults(backend: RecordingBackend, rng: random.Random, count: int) -> None:
    """Queue `count` replies mixing success, partial success, retryable and final failures."""
    for _ in range(count):
        kind = rng.choice(["ok", "ok", "partial", "retry", "retry", "reject"])
        if isinstance(backend, GrpcBackend):
            backend.replies.append(
                {
                    "ok": GrpcReply(),
                    "partial": GrpcReply(rejected_spans=1, message="one bad span"),
                    "retry": GrpcReply(grpc.StatusCode.UNAVAILABLE),
                    "reject": GrpcReply(grpc.StatusCode.INVALID_ARGUMENT),
                }[kind]
            )
        else:
            assert isinstance(backend, HttpBackend)
            backend.replies.append(
                {
                    "ok": HttpReply(),
                    "partial": HttpReply(rejected_spans=1, message="one bad span"),
                    "retry": HttpReply(503, retry_after="0"),
                    "reject": HttpReply(400),
                }[kind]
            )


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("close_timeout", [10.0, 0.0])
async def test_each_offered_span_is_counted_exactly_once(
    backend: RecordingBackend, metrics: Metrics, seed: int, close_timeout: float
) -> None:
    rng = random.Random(seed)
    _script_faults(backend, rng, 60)
    traces = [kept_trace(n, rng.randint(1, 12), padding=rng.randint(10, 400)) for n in range(150)]
    offered = sum(t.span_count for t in traces)
    exporter = exporter_for(
        backend,
        metrics,
        batch_max_spans=30,
        batch_max_bytes=6000,
        queue_max_bytes=40_000,
        concurrency=3,
        retry_max_elapsed=0.05,
    )
    await exporter.start()
    for index, trace in enumerate(traces):
        exporter.offer(trace)
        if index % 10 == 0:
            await asyncio.sleep(0)  # let the batcher and senders interleave with the offers
    await exporter.close(timeout=close_timeout)

    outcomes = span_outcomes(metrics)
    assert sum(outcomes.values()) == offered
    arrived = backend.arrived()
    keys = {(a.span.trace_id, a.span.span_id) for a in arrived}
    assert len(keys) == len(arrived), "a span arrived twice"
    # Sent spans all arrived; what arrived beyond them was refused by partial success, or was
    # accepted by the backend just as close() gave up on the request.
    assert outcomes["sent"] <= len(arrived)
    assert len(arrived) <= outcomes["sent"] + outcomes["rejected"] + outcomes["dropped_shutdown"]
    if close_timeout:
        assert outcomes["dropped_shutdown"] == 0


async def test_spans_of_batches_cut_just_before_close_gives_up_are_counted(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    exporter = exporter_for(backend, metrics, batch_max_spans=1, concurrency=4)
    await exporter.start()
    for n in range(3):
        exporter.offer(kept_trace(n, 2))
    # One turn of the loop lets the batcher cut batches and create their sending tasks; close()
    # then gives up at once and cancels them, wherever they are (not started, mid-request).
    await asyncio.sleep(0)
    await exporter.close(timeout=0.0)
    outcomes = span_outcomes(metrics)
    assert sum(outcomes.values()) == 6
    assert outcomes["dropped_shutdown"] + outcomes["sent"] == 6
