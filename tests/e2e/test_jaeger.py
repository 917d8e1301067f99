"""Kept traces land in a real Jaeger, whole, with their sample rate and reason; dropped ones don't.

Jaeger v2 (built by `make peers` from the Go module proxy) runs with bench/peers/jaeger/config.yaml,
the README quick start's, on free ports; the traces come from the OpenTelemetry SDK.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opentelemetry import trace as trace_api

from tests.e2e.harness import RefineryProcess, wait_until
from tests.e2e.peers import Jaeger
from tests.e2e.sdk import trace_id_of, tracer_provider

RULES = """
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
        - Name: drop health checks
          Drop: true
          Conditions:
            - Field: http.route
              Operator: "="
              Value: /healthz
        - Name: sample the rest
          SampleRate: 3
"""
SPANS_PER_TRACE = 4


def otlp_attributes(span: dict[str, Any]) -> dict[str, Any]:
    """An OTLP JSON span's attributes as plain values (int64s arrive as strings)."""
    values: dict[str, Any] = {}
    for attribute in span.get("attributes", []):
        value = attribute["value"]
        if "intValue" in value:
            values[attribute["key"]] = int(value["intValue"])
        else:
            values[attribute["key"]] = next(iter(value.values()), None)
    return values


def jaeger_spans(body: Any) -> list[dict[str, Any]]:
    return [
        span
        for resource_spans in body["result"]["resourceSpans"]
        for scope_spans in resource_spans["scopeSpans"]
        for span in scope_spans["spans"]
    ]


def send_traces(endpoint: str) -> dict[str, str]:
    """Thirty traces of four spans each through the SDK; returns {trace_id: kind}."""
    kinds: dict[str, str] = {}
    with tracer_provider("grpc", endpoint, service="checkout", seed=7) as provider:
        tracer = provider.get_tracer("e2e")
        for n in range(30):
            kind = "error" if n % 5 == 0 else "health" if n % 5 == 1 else "plain"
            root = tracer.start_span("GET /orders", kind=trace_api.SpanKind.SERVER)
            root.set_attribute("http.route", "/healthz" if kind == "health" else "/orders")
            context = trace_api.set_span_in_context(root)
            for child in range(SPANS_PER_TRACE - 1):
                span = tracer.start_span(f"SELECT {child}", context=context)
                if kind == "error" and child == 0:
                    span.set_status(trace_api.Status(trace_api.StatusCode.ERROR, "boom"))
                span.end()
            root.end()
            kinds[trace_id_of(root)] = kind
    return kinds


def test_kept_traces_appear_in_jaeger_whole_and_dropped_ones_do_not(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with Jaeger(tmp_path) as jaeger:
        config = tmp_path / "refinery.yaml"
        config.write_text(
            "listen:\n  otlp_grpc: 127.0.0.1:0\n  otlp_http: 127.0.0.1:0\n  api: 127.0.0.1:0\n"
            "traces:\n  send_delay: 200ms\n  trace_timeout: 5s\nstore:\n  path: null\n"
            f"export:\n  otlp:\n    endpoint: {jaeger.otlp_grpc}\n    protocol: grpc\n"
        )
        with RefineryProcess(config, rules, extra_args=["--workers", "1"]) as node:
            kinds = send_traces(node.grpc_endpoint)
            wait_until(
                lambda: node.metric("refinery_traces_decided_total") == len(kinds),
                what="every trace decided",
            )
            kept_spans = node.metric("refinery_spans_decided_total", decision="kept")
            wait_until(
                lambda: (
                    node.metric("refinery_export_spans_total", exporter="otlp", outcome="sent")
                    == kept_spans
                ),
                what="every kept span sent to Jaeger",
            )
            decisions = {}
            for trace_id in kinds:
                status, body = node.get(f"/api/v1/traces/{trace_id}")
                assert status == 200, body
                decisions[trace_id] = json.loads(body)["decision"]
        kept = {t for t, d in decisions.items() if d["kept"]}
        assert {t for t, k in kinds.items() if k == "error"} <= kept
        assert not {t for t, k in kinds.items() if k == "health"} & kept
        assert any(decisions[t]["sample_rate"] == 3 for t in kept), "a sampled trace kept 1 in 3"
        assert len(kept) < len(kinds)

        def stored_whole(trace_id: str) -> bool:
            status, body = jaeger.trace(trace_id)
            return status == 200 and len(jaeger_spans(body)) == SPANS_PER_TRACE

        for trace_id in kept:
            jaeger.wait_until(lambda t=trace_id: stored_whole(t), f"trace {trace_id} in Jaeger")
            _, body = jaeger.trace(trace_id)
            for span in jaeger_spans(body):
                attributes = otlp_attributes(span)
                assert attributes["SampleRate"] == decisions[trace_id]["sample_rate"]
                assert attributes["meta.refinery.reason"] == decisions[trace_id]["reason"]
        for trace_id in set(kinds) - kept:
            status, _ = jaeger.trace(trace_id)
            assert status == 404, f"dropped trace {trace_id} is in Jaeger"
