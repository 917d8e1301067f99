"""Overload: refused at the door, never accepted and then dropped."""

from __future__ import annotations

import time
from pathlib import Path

from tests.cluster_support import KEEP_ALL
from tests.e2e import harness
from tests.e2e.cluster_harness import address_of, post
from tests.e2e.harness import RecordingBackend, RefineryProcess, wait_until
from tests.otlp_builders import request, span


def write_config(directory: Path, backend: RecordingBackend, **traces: str) -> Path:
    export = {
        "batch_timeout": "0s",
        "queue_max_bytes": "1MiB",
        "retry_max_interval": "500ms",
        "retry_max_elapsed": "10m",
    }
    return harness.write_config(directory, backend, export=export, **traces)


KEEP_ERRORS_AND_FLAGGED = """
RulesVersion: 2
Samplers:
  __default__:
    RulesBasedSampler:
      Rules:
        - {Name: keep errors, SampleRate: 1, Conditions: [{Field: error, Operator: exists}]}
        - Name: keep flagged
          SampleRate: 1
          Conditions: [{Field: app.flagged, Operator: "=", Value: true, Datatype: bool}]
        - {Name: drop the rest, Drop: true}
"""


def test_a_backend_that_cannot_keep_up_gets_backpressure_not_drops(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    with RecordingBackend() as backend:
        backend.down = True
        with RefineryProcess(write_config(tmp_path, backend), rules) as node:
            address = address_of(node)
            padding = "p" * 700
            accepted = refused = 0
            trace = 1
            while refused < 20 and trace < 5000:
                body = request(
                    *(
                        span(trace, n, None if n == 1 else 1, attrs={"pad": padding})
                        for n in range(1, 21)
                    )
                ).SerializeToString()
                status = post(address, body)
                assert status in (200, 429), status
                if status == 200:
                    accepted += 20
                else:
                    refused += 1
                trace += 1
            assert refused == 20, "the node pushed back"
            assert accepted > 400, "it took what fits first"
            wait_until(
                lambda: node.metric("refinery_spans_waiting") == 0, what="every trace decided"
            )
            assert node.metric("refinery_export_spans_total", outcome="dropped_queue_full") == 0
            backend.down = False
            wait_until(lambda: len(backend.spans()) == accepted, timeout=60, what="delivery")
            assert node.metric("refinery_export_spans_total", outcome="sent") == accepted


def test_an_error_refused_by_a_full_export_queue_and_sent_again_late_is_rescued(
    tmp_path: Path,
) -> None:
    """The root of a plain trace is accepted; the request with its error is refused (the export
    queue is full) and sent again after the root's deadline. The trace is decided without it
    (refusals for a full export queue are not waited out: buffered spans count toward that
    queue), so the error comes late, and is kept: it meets `keep errors`, ahead of the rule that
    dropped it."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ERRORS_AND_FLAGGED)
    with RecordingBackend() as backend:
        backend.down = True
        config = write_config(tmp_path, backend, send_delay="3s", trace_timeout="30s")
        with RefineryProcess(config, rules) as node:
            address = address_of(node)
            assert post(address, request(span(1, 1)).SerializeToString()) == 200
            padding = "p" * 700
            trace = 100
            while post(address, flagged_trace(trace, padding)) == 200:  # fill the export queue
                trace += 1
                assert trace < 5000, "the node never pushed back"
            error = request(span(1, 2, 1, error=True)).SerializeToString()
            assert post(address, error) == 429
            wait_until(
                lambda: node.metric("refinery_traces_decided_total", decision="dropped") == 1,
                what="the plain trace decided without its error",
            )
            assert node.metric("refinery_decision_hold_seconds") == 0
            backend.down = False
            while post(address, error) != 200:
                time.sleep(0.3)
            wait_until(lambda: f"{1:032x}" in backend.by_trace(), what="the error")
            (received,) = backend.by_trace()[f"{1:032x}"]
            assert received.attributes["meta.refinery.reason"] == "rules/trace/keep errors"
            assert received.attributes["meta.refinery.send_reason"] == "trace_send_late_span"
            assert node.metric("refinery_late_spans_total", decision="rescued") == 1


def flagged_trace(trace: int, padding: str) -> bytes:
    spans = [span(trace, 1, attrs={"app.flagged": True, "pad": padding})]
    spans += [span(trace, n, 1, attrs={"pad": padding}) for n in range(2, 21)]
    return request(*spans).SerializeToString()


def test_a_relieving_node_decides_on_arrival_and_stays_ready(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    config = tmp_path / "relief.yaml"
    config.write_text(
        "\n".join(
            [
                "listen: {otlp_grpc: 127.0.0.1:0, otlp_http: 127.0.0.1:0, api: 127.0.0.1:0}",
                "traces: {send_delay: 30s, trace_timeout: 60s, max_memory: 256KiB}",
                "stress_relief: {mode: relieve, activate_after: 0s, deactivate_after: 1h}",
                "store: {path: null}",
            ]
        )
        + "\n"
    )
    with RecordingBackend() as backend:
        config.write_text(
            config.read_text()
            + f"export:\n  otlp:\n    endpoint: {backend.endpoint}\n"
            + "    retry_initial_interval: 100ms\n"
        )
        with RefineryProcess(config, rules) as node:
            address = address_of(node)
            padding = "p" * 700
            for trace in range(1, 41):  # 40 traces of ~15 KB: the buffer runs over 256 KiB
                body = request(
                    *(span(trace, n, 1, attrs={"pad": padding}) for n in range(2, 22))
                ).SerializeToString()
                assert post(address, body) == 200
            wait_until(lambda: node.metric("refinery_stress_relief_active") == 1, what="relief on")
            assert node.get("/ready")[0] == 200
            before = len(backend.spans())
            for trace in range(1001, 1011):  # new traces: decided on arrival, kept (rate 1)
                body = request(*(span(trace, n, 1) for n in range(2, 6))).SerializeToString()
                assert post(address, body) == 200
            wait_until(lambda: len(backend.spans()) >= before + 40, what="relieved traces out")
            relieved = [
                s
                for s in backend.spans()
                if s.attributes["meta.refinery.reason"] == "stress_relief"
            ]
            assert {s.trace_id for s in relieved} >= {f"{t:032x}" for t in range(1001, 1011)}
            assert node.metric("refinery_stress_relief_spans_total", decision="kept") >= 40
            assert node.metric("refinery_stress_relief_activations_total") == 1


def test_a_restart_during_a_backend_outage_loses_nothing(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    with RecordingBackend() as backend:
        backend.down = True
        config = write_config(tmp_path, backend)
        sent = 0
        with RefineryProcess(config, rules, workers=2) as node:
            address = address_of(node)
            for trace in range(1, 51):
                body = request(*(span(trace, n, None if n == 1 else 1) for n in range(1, 9)))
                assert post(address, body.SerializeToString()) == 200
                sent += 8
            wait_until(
                lambda: node.metric("refinery_traces_decided_total") == 50,
                what="every trace decided, waiting for the backend",
            )
            assert node.terminate() == 0
            log = "".join(node.log)
            assert "kept on disk for the next start" in log
            assert node_metric_total(log) == 0  # nothing was dropped
        spilled = list((tmp_path / "refinery-data" / "spill").glob("spill-otlp-*.pb"))
        assert spilled, "the undelivered spans are on disk"
        backend.down = False
        with RefineryProcess(config, rules, workers=1) as again:
            wait_until(lambda: len(backend.spans()) == sent, what="the spilled spans delivered")
            assert {s.trace_id for s in backend.spans()} == {f"{t:032x}" for t in range(1, 51)}
            wait_until(
                lambda: not list((tmp_path / "refinery-data" / "spill").glob("spill-*")),
                what="the spill files gone once delivered",
            )
            assert again.terminate() == 0


def node_metric_total(log: str) -> int:
    """Spans the shutdown log lines say were dropped."""
    import re

    return sum(int(m) for m in re.findall(r"(\d+) dropped \(refinery_export_spans_total\)", log))
