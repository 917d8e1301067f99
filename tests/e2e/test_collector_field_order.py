"""OTel SDK → the real OpenTelemetry Collector → `refinery-py serve` → an OTLP backend.

The deployment the README recommends. The Collector re-encodes every span in descending
field-number order (status first, trace_id last, every attribute's value before its key), so
this is where a reader that assumes the SDK's order goes wrong: attribute rules that never
match, customers that are all "", children taken for roots. The same traffic is sent straight
from the SDK and through the Collector; the decisions, customers, rates and annotations must be
the ones predicted, both ways. The Collector binary is built by `make test` (`make peers`); the
test fails, never skips, without it.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.trace import Status, StatusCode

from refinery_py.decide.hashing import keep_for_rate
from refinery_py.otlp.tracestate import encode_threshold, threshold_for_rate
from tests.e2e.collector import CollectorProcess
from tests.e2e.harness import RecordingBackend, RefineryProcess, wait_until
from tests.e2e.sdk import trace_id_of, tracer_provider

RULES = """\
RulesVersion: 2
Samplers:
  __default__:
    RulesBasedSampler:
      Rules:
        - Name: keep errors
          Conditions:
            - Field: error
              Operator: exists
          SampleRate: 1
        - Name: keep flagged
          Conditions:
            - Field: app.flagged
              Operator: "="
              Value: true
              Datatype: bool
          SampleRate: 1
        - Name: drop health checks
          Drop: true
          Conditions:
            - Field: root.http.route
              Operator: "="
              Value: /healthz
        - Name: keep vip customer
          Conditions:
            - Field: customer.id
              Operator: "="
              Value: vip
          SampleRate: 1
        - Name: sample the rest
          SampleRate: 4
"""
TOKEN = "e2e-token"
KINDS = ["flagged"] * 6 + ["health"] * 6 + ["vip"] * 4 + ["error"] * 4 + ["plain"] * 30
REASONS = {
    "flagged": "rules/trace/keep flagged",
    "vip": "rules/trace/keep vip customer",
    "error": "rules/trace/keep errors",
    "plain": "rules/trace/sample the rest",
}


def _write_config(directory: Path, backend: RecordingBackend) -> Path:
    path = directory / "refinery.yaml"
    path.write_text(
        "\n".join(
            [
                "listen:",
                "  otlp_grpc: 127.0.0.1:0",
                "  otlp_http: 127.0.0.1:0",
                "  api: 127.0.0.1:0",
                "traces:",
                "  send_delay: 1s",
                "  trace_timeout: 30s",
                "store:",
                f"  path: {directory / 'traces.db'}",
                "api:",
                f"  token: {TOKEN}",
                "export:",
                "  otlp:",
                f"    endpoint: {backend.endpoint}",
                "    protocol: grpc",
                "    batch_timeout: 50ms",
                "    retry_initial_interval: 100ms",
            ]
        )
        + "\n"
    )
    return path


def _make_trace(tracer: trace_api.Tracer, kind: str, index: int) -> tuple[str, str]:
    """A root and three children; returns (trace ID, the customer the trace should get)."""
    route = "/healthz" if kind == "health" else f"/api/orders/{index % 5}"
    customer = "vip" if kind == "vip" else f"cust-{index % 3}"
    with tracer.start_as_current_span(f"GET {route}", kind=trace_api.SpanKind.SERVER) as root:
        root.set_attribute("http.route", route)
        if kind != "vip":
            root.set_attribute("customer.id", customer)
        if kind == "flagged":
            root.set_attribute("app.flagged", True)
        for child_index in range(3):
            with tracer.start_as_current_span(f"db.query {child_index}") as child:
                child.set_attribute("db.system", "postgresql")
                if child_index == 2:
                    # An application that sampled this work 1 in 2 already says so.
                    child.set_attribute("SampleRate", 2)
                    if kind == "vip":
                        child.set_attribute("customer.id", customer)  # on a child only
                if kind == "error" and child_index == 1:
                    child.set_status(Status(StatusCode.ERROR, "connection reset"))
        return trace_id_of(root), customer


def _expected_kept(trace_id: str, kind: str) -> bool:
    return kind in ("flagged", "vip", "error") or (kind == "plain" and keep_for_rate(trace_id, 4))


def _stored_customers(node: RefineryProcess) -> dict[str, str]:
    request = urllib.request.Request(node.api + "/api/v1/traces?limit=1000")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as response:
        body: dict[str, Any] = json.loads(response.read())
    return {trace["trace_id"]: trace["customer"] for trace in body["traces"]}


@pytest.mark.parametrize("via", ["sdk", "collector"])
def test_attribute_rules_decide_the_same_with_the_collector_in_front(
    tmp_path: Path, via: str
) -> None:
    with (
        RecordingBackend() as backend,
        RefineryProcess(
            _write_config(tmp_path, backend), _rules(tmp_path), extra_args=["--workers", "1"]
        ) as node,
    ):
        if via == "collector":
            with CollectorProcess(tmp_path, node.grpc_endpoint) as collector:
                traces = _send(collector.endpoint)
                _wait_for_decisions(node, len(traces), collector.log)
        else:
            traces = _send(node.grpc_endpoint)
            _wait_for_decisions(node, len(traces), lambda: "")
        kept = {t for t, (kind, _) in traces.items() if _expected_kept(t, kind)}
        assert any(traces[t][0] == "plain" for t in kept)
        assert any(traces[t][0] == "plain" and t not in kept for t in traces)
        wait_until(
            lambda: node.metric("refinery_store_writes_total") == len(kept),
            what="kept traces stored",
        )
        wait_until(
            lambda: sum(map(len, backend.by_trace().values())) == 4 * len(kept),
            what="kept traces exported",
        )

        received = backend.by_trace()
        assert set(received) == kept
        for trace_id, spans in received.items():
            kind, _ = traces[trace_id]
            rate = 4 if kind == "plain" else 1
            assert len(spans) == 4, "a kept trace arrives complete"
            roots = [s for s in spans if not s.span.parent_span_id]
            assert len(roots) == 1
            assert roots[0].attributes["meta.span_count"] == 4
            for received_span in spans:
                span = received_span.span
                keys = [a.key for a in span.attributes]
                assert keys.count("SampleRate") == 1
                attributes = received_span.attributes
                incoming = 2 if span.name == "db.query 2" else None
                assert attributes["SampleRate"] == rate * (incoming or 1)
                assert attributes.get("meta.refinery.original_sample_rate") == incoming
                assert attributes["meta.refinery.reason"] == REASONS[kind]
                assert attributes["meta.refinery.send_reason"] == "trace_send_got_root"
                threshold = encode_threshold(threshold_for_rate(rate * (incoming or 1)))
                assert span.trace_state == f"ot=th:{threshold}"
        assert node.metric("refinery_late_spans_total") == 0
        assert _stored_customers(node) == {t: traces[t][1] for t in kept}
        assert node.terminate() == 0


def _rules(directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(RULES)
    return path


def _send(endpoint: str) -> dict[str, tuple[str, str]]:
    """Every kind of trace, through the SDK's OTLP/gRPC exporter: trace ID → (kind, customer)."""
    traces: dict[str, tuple[str, str]] = {}
    with tracer_provider("grpc", endpoint) as provider:
        tracer = provider.get_tracer("e2e")
        for index, kind in enumerate(KINDS):
            trace_id, customer = _make_trace(tracer, kind, index)
            traces[trace_id] = (kind, customer)
        provider.force_flush()
    return traces


def _wait_for_decisions(node: RefineryProcess, count: int, log: Any) -> None:
    wait_until(
        lambda: node.metric("refinery_traces_decided_total") == count,
        what=f"every trace decided (collector log: {log()[-2000:]})",
    )
