"""Record live traffic with `serve --record`, replay it with `rules test`: same decisions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from opentelemetry import trace as trace_api
from opentelemetry.trace import Status, StatusCode

from tests.e2e.harness import RecordingBackend, RefineryProcess, wait_until, write_config
from tests.e2e.sdk import trace_id_of, tracer_provider

RULES = """\
RulesVersion: 2
Samplers:
  __default__:
    RulesBasedSampler:
      Rules:
        - Name: keep errors
          SampleRate: 1
          Conditions:
            - Field: error
              Operator: exists
        - Name: drop health
          Drop: true
          Conditions:
            - Field: root.http.route
              Operator: "="
              Value: /health
        - Name: rest
          SampleRate: 3
"""


def test_replaying_a_recording_reproduces_the_live_decisions(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    record_dir = tmp_path / "recorded"
    with RecordingBackend() as backend:
        config = write_config(tmp_path, backend)
        with RefineryProcess(config, rules, extra_args=["--record", str(record_dir)]) as node:
            with tracer_provider("grpc", node.grpc_endpoint) as provider:
                tracer = provider.get_tracer("e2e")
                trace_ids = []
                for n in range(60):
                    route = "/health" if n % 5 == 0 else "/orders"
                    with tracer.start_as_current_span("GET", kind=trace_api.SpanKind.SERVER) as r:
                        r.set_attribute("http.route", route)
                        r.set_attribute("customer.id", f"c{n % 4}")
                        with tracer.start_as_current_span("db") as child:
                            if n % 7 == 0:
                                child.set_status(Status(StatusCode.ERROR))
                        trace_ids.append(trace_id_of(r))
                provider.force_flush()
            wait_until(
                lambda: node.metric("refinery_traces_decided_total") == len(trace_ids),
                what="all decided",
            )
            kept_spans = node.metric("refinery_spans_decided_total", decision="kept")
            wait_until(
                lambda: (
                    node.metric("refinery_export_spans_total", outcome="sent", exporter="otlp")
                    == kept_spans
                ),
                what="exported",
            )
            assert node.terminate() == 0
        live = backend.by_trace()

    recordings = sorted(record_dir.glob("*.jsonl"))
    assert recordings
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "refinery_py",
            "rules",
            "test",
            "--rules",
            str(rules),
            "--config",
            str(config),
            "--json",
            *map(str, recordings),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    replayed = {t["trace_id"]: t for t in json.loads(result.stdout)["traces"]}
    assert set(replayed) == set(trace_ids)
    for trace_id in trace_ids:
        decision = replayed[trace_id]
        assert decision["keep"] == (trace_id in live), trace_id
        if decision["keep"]:
            attributes = live[trace_id][0].attributes
            assert attributes["SampleRate"] == decision["sample_rate"]
            assert attributes["meta.refinery.reason"] == decision["reason"]
            assert decision["span_count"] == len(live[trace_id])
    assert {t["customer"] for t in replayed.values()} == {"c0", "c1", "c2", "c3"}
