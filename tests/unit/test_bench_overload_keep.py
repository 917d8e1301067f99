"""bench.overload_keep: each refusal_wait reaches its server, and every run is measured."""

from __future__ import annotations

from pathlib import Path

import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import latency, overload_keep
from bench.payloads import PayloadSet, epoch_trace_id
from bench.sink import Sink


def test_late_spans_are_read_by_decision_over_every_worker() -> None:
    text = "\n".join(
        [
            "# TYPE refinery_late_spans_total counter",
            'refinery_late_spans_total{decision="kept",worker="0"} 3.0',
            'refinery_late_spans_total{decision="kept",worker="1"} 4.0',
            'refinery_late_spans_total{decision="dropped",worker="0"} 0.0',
            'refinery_late_spans_total{decision="rescued",worker="1"} 2.0',
        ]
    )
    assert overload_keep.late_spans(text) == {"kept": 7.0, "rescued": 2.0}
    assert overload_keep.late_spans(None) == {}


def test_a_short_run_measures_each_wait_on_its_own_server(tmp_path: Path) -> None:
    runs = overload_keep.main(
        [
            "--rate=4000",
            "--waits=0s,3s",
            "--rounds=1",
            "--seconds=2",
            "--warm=1",
            "--settle=2",
            "--connections=2",
            "--traces=200",
            f"--logs={tmp_path}",
        ]
    )
    assert [r.wait for r in runs] == ["0s", "3s"]
    for run in runs:
        assert 2_000 < run.accepted_per_second < 8_000
        assert run.must_keep > 0
        assert run.must_keep_missing == 0, "nothing refused at this rate, nothing lost"
        assert run.buffer_peak_bytes > 0
    (config,) = tmp_path.glob("refinery-*.yaml")  # the last server's
    assert yaml.safe_load(config.read_text())["traces"]["refusal_wait"] == "3s"


def test_the_sink_notes_which_traces_had_an_error_span_arrive() -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    spans.add(trace_id=b"e" * 16, span_id=b"1" * 8, parent_span_id=b"0" * 8).status.code = 2
    spans.add(trace_id=b"o" * 16, span_id=b"2" * 8).status.code = 1
    spans.add(trace_id=b"u" * 16, span_id=b"3" * 8, parent_span_id=b"0" * 8)
    sink = Sink()
    sink.export(request.SerializeToString(), context=None)  # type: ignore[arg-type]
    assert sink.take_errored() == {b"e" * 16}
    assert set(sink.take_roots()) == {b"o" * 16}
    assert sink.take_errored() == set(), "taken once"


def test_a_missing_must_keep_trace_whose_error_arrived_is_kept_in_part() -> None:
    roots = [b"a" * 12, b"b" * 12, b"c" * 12, b"d" * 12]
    payload = PayloadSet(
        bodies=[b""], span_counts=[4], trace_id_offsets=[[]], roots=[roots],
        must_keep={b"a" * 12, b"b" * 12, b"c" * 12},
    )  # fmt: skip
    arrivals = {epoch_trace_id(b"a" * 12, 7): 11.0, epoch_trace_id(b"d" * 12, 7): 10.5}
    errored = {epoch_trace_id(b"b" * 12, 7), epoch_trace_id(b"d" * 12, 7)}
    measured = latency.measure([(0, 0, 7, 10.0)], 9.0, 12.0, [payload], arrivals, errored=errored)
    assert measured.must_keep == 3
    assert measured.must_keep_missing == 2, "b and c: their roots never arrived"
    assert measured.must_keep_partial == 1, "b: its error did"
    assert measured.samples == 4 and measured.p50 == 1.0
