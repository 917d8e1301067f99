"""The traffic recorder: OTLP JSON lines files that replay to the same spans, bounded on disk."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.receive.recorder import Recorder
from refinery_py.replay.sources import read_requests
from refinery_py.telemetry import Metrics
from tests.otlp_builders import request, span


def spans_in(directory: Path) -> list[bytes]:
    ids = []
    for path in sorted(directory.glob("*.jsonl")):
        for body in read_requests(path):
            decoded = ExportTraceServiceRequest.FromString(body)
            for rs in decoded.resource_spans:
                assert rs.resource.attributes[0].value.string_value == "svc"
                for ss in rs.scope_spans:
                    ids.extend(s.span_id for s in ss.spans)
    return ids


def batch(n: int, pad: int = 0) -> object:
    message = request(span(n, n, attrs={"pad": "x" * pad}), span(n, n + 1000, n))
    return split_request(message.SerializeToString(), OriginInterner())


def test_recorded_lines_replay_to_the_accepted_spans(tmp_path: Path) -> None:
    metrics = Metrics()
    recorder = Recorder(tmp_path / "rec", metrics=metrics)
    recorder.start()
    for n in range(1, 21):
        recorder.record(batch(n))  # type: ignore[arg-type]
    recorder.close()
    recorded = spans_in(tmp_path / "rec")
    assert len(recorded) == 40
    assert recorded[:2] == [(1).to_bytes(8, "big"), (1001).to_bytes(8, "big")]
    assert (
        metrics.registry.get_sample_value("refinery_record_spans_total", {"outcome": "written"})
        == 40
    )


def test_files_rotate_and_the_total_stays_bounded(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, metrics=Metrics(), max_file_bytes=20_000, max_total_bytes=60_000)
    recorder.start()
    for n in range(1, 101):
        recorder.record(batch(n, pad=2_000))  # type: ignore[arg-type]
    recorder.close()
    files = list(tmp_path.glob("traces-*.jsonl"))
    assert len(files) > 2
    assert all(f.stat().st_size <= 20_000 + 10_000 for f in files)
    total = sum(f.stat().st_size for f in files)
    assert total <= 60_000 + 20_000 + 10_000  # the budget, plus the file being written
    assert spans_in(tmp_path)[-1] == (1100).to_bytes(8, "big")  # the newest survive


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    metrics = Metrics()
    recorder = Recorder(tmp_path, metrics=metrics, queue_max_bytes=1)
    # Not started: nothing drains the queue, so every batch beyond the budget is dropped.
    for n in range(1, 6):
        recorder.record(batch(n))  # type: ignore[arg-type]
    assert (
        metrics.registry.get_sample_value(
            "refinery_record_spans_total", {"outcome": "dropped_queue_full"}
        )
        == 10
    )
    recorder.close()
