"""Backend faults: what is retried, what is dropped, and that each drop is counted by reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import grpc
import pytest

from refinery_py.export import OtlpExporter
from refinery_py.telemetry import Metrics

from .backends import GrpcBackend, GrpcReply, HttpBackend, HttpReply, RecordingBackend, unused_port
from .builders import kept_trace
from .harness import SHORT, counter, exporter_for, span_outcomes

PATIENT: dict[str, Any] = {
    "retry_initial_interval": 60.0,
    "retry_max_interval": 60.0,
    "retry_max_elapsed": 600.0,
}
"""Backoff so slow that a test can only finish if the server's retry hint is what it follows."""


def _partial(backend: RecordingBackend, rejected: int, message: str) -> None:
    if isinstance(backend, GrpcBackend):
        backend.replies.append(GrpcReply(rejected_spans=rejected, message=message))
    else:
        assert isinstance(backend, HttpBackend)
        backend.replies.append(HttpReply(rejected_spans=rejected, message=message))


async def test_grpc_unavailable_with_retry_info_is_retried_when_the_server_says(
    grpc_backend: GrpcBackend, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    grpc_backend.replies.extend(
        [GrpcReply(grpc.StatusCode.UNAVAILABLE, retry_info=0.01, message="warming up")] * 2
    )
    exporter = exporter_for(grpc_backend, metrics, **PATIENT)
    await exporter.start()
    for n in range(3):
        exporter.offer(kept_trace(n, 4))
    await grpc_backend.wait_for("spans", 12)
    await exporter.close(timeout=10)
    assert grpc_backend.attempts == 3
    assert span_outcomes(metrics)["sent"] == 12
    assert counter(metrics, "refinery_export_retries") == 2
    assert counter(metrics, "refinery_export_requests", outcome="retryable_failure") == 2
    assert counter(metrics, "refinery_export_requests", outcome="sent") == 1
    # An outage that will be retried is still worth a line (throttled), with what is at stake.
    assert "backend failed" in caplog.text and "warming up" in caplog.text
    assert "retrying 12 spans" in caplog.text


async def test_grpc_unavailable_without_a_hint_backs_off_and_retries(
    grpc_backend: GrpcBackend, metrics: Metrics
) -> None:
    grpc_backend.replies.extend([GrpcReply(grpc.StatusCode.UNAVAILABLE)] * 3)
    exporter = exporter_for(grpc_backend, metrics)
    await exporter.start()
    exporter.offer(kept_trace(0, 5))
    await exporter.close(timeout=10)
    assert grpc_backend.attempts == 4
    assert span_outcomes(metrics)["sent"] == 5


async def test_grpc_resource_exhausted_without_retry_info_is_rejected_not_retried(
    grpc_backend: GrpcBackend, metrics: Metrics
) -> None:
    grpc_backend.replies.append(GrpcReply(grpc.StatusCode.RESOURCE_EXHAUSTED, message="quota"))
    exporter = exporter_for(grpc_backend, metrics)
    await exporter.start()
    exporter.offer(kept_trace(0, 5))
    await exporter.close(timeout=10)
    assert grpc_backend.attempts == 1
    assert span_outcomes(metrics)["rejected"] == 5
    assert span_outcomes(metrics)["sent"] == 0
    assert counter(metrics, "refinery_export_retries") == 0
    assert counter(metrics, "refinery_export_requests", outcome="rejected") == 1


async def test_grpc_resource_exhausted_with_retry_info_is_retried(
    grpc_backend: GrpcBackend, metrics: Metrics
) -> None:
    grpc_backend.replies.append(GrpcReply(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_info=0.01))
    exporter = exporter_for(grpc_backend, metrics, **PATIENT)
    await exporter.start()
    exporter.offer(kept_trace(0, 5))
    await grpc_backend.wait_for("spans", 5)
    await exporter.close(timeout=10)
    assert grpc_backend.attempts == 2
    assert span_outcomes(metrics)["sent"] == 5


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED]
)
async def test_grpc_permanent_errors_are_rejected(
    grpc_backend: GrpcBackend, metrics: Metrics, code: grpc.StatusCode
) -> None:
    grpc_backend.replies.append(GrpcReply(code, message="no"))
    exporter = exporter_for(grpc_backend, metrics)
    await exporter.start()
    exporter.offer(kept_trace(0, 2))
    await exporter.close(timeout=10)
    assert grpc_backend.attempts == 1
    assert span_outcomes(metrics)["rejected"] == 2


def _http_date(offset: timedelta) -> str:
    return format_datetime(datetime.now(UTC) + offset, usegmt=True)


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [
        (503, "0"),
        (503, _http_date(timedelta(days=-1))),
        (429, "0"),
        (502, "0"),
        (504, "0"),
    ],
)
async def test_http_retryable_statuses_honour_retry_after_then_succeed(
    http_backend: HttpBackend, metrics: Metrics, status: int, retry_after: str
) -> None:
    http_backend.replies.append(HttpReply(status, retry_after=retry_after, message="busy"))
    exporter = exporter_for(http_backend, metrics, **PATIENT)
    await exporter.start()
    exporter.offer(kept_trace(0, 3))
    await http_backend.wait_for("spans", 3)
    await exporter.close(timeout=10)
    assert http_backend.attempts == 2
    assert span_outcomes(metrics)["sent"] == 3
    assert counter(metrics, "refinery_export_retries") == 1


@pytest.mark.parametrize("status", [400, 401, 404, 413, 500])
async def test_http_other_error_statuses_are_rejected_and_counted(
    http_backend: HttpBackend, metrics: Metrics, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    http_backend.replies.append(HttpReply(status, message="malformed span"))
    exporter = exporter_for(http_backend, metrics)
    await exporter.start()
    exporter.offer(kept_trace(0, 3))
    await exporter.close(timeout=10)
    assert http_backend.attempts == 1
    assert span_outcomes(metrics)["rejected"] == 3
    assert counter(metrics, "refinery_export_requests", outcome="rejected") == 1
    assert f"HTTP {status}: malformed span" in caplog.text


async def test_partial_success_counts_rejected_spans_and_logs_the_message(
    backend: RecordingBackend, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    _partial(backend, 2, "2 spans had an empty name")
    exporter = exporter_for(backend, metrics)
    await exporter.start()
    exporter.offer(kept_trace(0, 5))
    await exporter.close(timeout=10)
    outcomes = span_outcomes(metrics)
    assert (outcomes["sent"], outcomes["rejected"]) == (3, 2)
    assert counter(metrics, "refinery_export_requests", outcome="partial_success") == 1
    assert "2 spans had an empty name" in caplog.text


async def test_partial_success_logging_is_rate_limited(
    backend: RecordingBackend, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(5):
        _partial(backend, 1, "span rejected by policy")
    exporter = exporter_for(backend, metrics, batch_max_spans=2)
    await exporter.start()
    for n in range(5):
        exporter.offer(kept_trace(n, 2))
    await exporter.close(timeout=10)
    assert span_outcomes(metrics)["rejected"] == 5
    logged = [r for r in caplog.records if "span rejected by policy" in r.getMessage()]
    assert len(logged) == 1


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_unreachable_backend_is_retried_then_dropped_when_the_budget_is_spent(
    metrics: Metrics, protocol: str
) -> None:
    exporter = OtlpExporter(
        f"127.0.0.1:{unused_port()}",
        protocol="grpc" if protocol == "grpc" else "http",
        insecure=True,
        metrics=metrics,
        **{**SHORT, "retry_max_elapsed": 0.1},
    )
    await exporter.start()
    exporter.offer(kept_trace(0, 4))
    await exporter.close(timeout=30)
    outcomes = span_outcomes(metrics)
    assert outcomes["dropped_retries_exhausted"] == 4
    assert outcomes["dropped_shutdown"] == 0
    assert counter(metrics, "refinery_export_retries") >= 1


async def test_a_full_queue_drops_and_counts_while_offer_never_waits(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    one = len(kept_trace(0, 2).payload)
    backend.gate.clear()
    exporter = exporter_for(backend, metrics, queue_max_bytes=3 * one, concurrency=1)
    await exporter.start()
    exporter.offer(kept_trace(0, 2))
    await backend.wait_for("in_flight", 1)
    # The one request slot is held by the stalled backend; offers now only fill the queue.
    for n in range(1, 21):
        exporter.offer(kept_trace(n, 2))
    outcomes = span_outcomes(metrics)
    assert outcomes["dropped_queue_full"] == 17 * 2
    queued = metrics.registry.get_sample_value("refinery_export_queue_spans", {"exporter": "otlp"})
    assert queued == 3 * 2 + 2  # the queue, and the batch being sent: a crash would lose both
    backend.gate.set()
    await exporter.close(timeout=10)
    queued = metrics.registry.get_sample_value("refinery_export_queue_spans", {"exporter": "otlp"})
    assert queued == 0
    outcomes = span_outcomes(metrics)
    assert outcomes["sent"] == 4 * 2
    assert sum(outcomes.values()) == 21 * 2
    assert len(backend.arrived()) == 8


async def test_close_gives_up_at_its_timeout_and_counts_the_rest_as_shutdown_drops(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    backend.gate.clear()
    exporter = exporter_for(backend, metrics, timeout=60.0, concurrency=1)
    await exporter.start()
    exporter.offer(kept_trace(0, 3))
    await backend.wait_for("in_flight", 1)
    exporter.offer(kept_trace(1, 4))
    await exporter.close(timeout=0.05)
    outcomes = span_outcomes(metrics)
    assert outcomes["dropped_shutdown"] == 7
    assert sum(outcomes.values()) == 7
    assert (
        metrics.registry.get_sample_value("refinery_export_queue_spans", {"exporter": "otlp"}) == 0
    )


async def test_close_interrupts_a_retry_backoff(metrics: Metrics) -> None:
    exporter = OtlpExporter(
        f"127.0.0.1:{unused_port()}",
        protocol="http",
        metrics=metrics,
        **{**SHORT, **PATIENT},
    )
    await exporter.start()
    exporter.offer(kept_trace(0, 2))
    await exporter.close(timeout=0.2)
    assert span_outcomes(metrics)["dropped_shutdown"] == 2
