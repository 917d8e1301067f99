"""The whole pipeline, end to end: OTel SDK → `refinery-py serve` → an OTLP backend.

Decisions for sampled traces are predicted from the trace ID (the keep decision is a
deterministic hash), so the test knows exactly which traces must arrive and which must not.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.trace import Status, StatusCode

from refinery_py.decide.hashing import keep_for_rate
from tests.e2e.harness import (
    REPO,
    RecordingBackend,
    RefineryProcess,
    wait_until,
    write_config,
)
from tests.e2e.sdk import trace_id_of, tracer_provider

DEFAULT_RULES = REPO / "rules" / "default.yaml"


def make_trace(tracer: trace_api.Tracer, kind: str, index: int) -> str:
    """A root span and three children; `kind` decides what makes it interesting."""
    route = "/healthz" if kind == "health" else f"/api/orders/{index % 7}"
    with tracer.start_as_current_span(f"GET {route}", kind=trace_api.SpanKind.SERVER) as root:
        root.set_attribute("http.route", route)
        root.set_attribute("customer.id", f"cust-{index % 5}")
        if kind == "flagged":
            root.set_attribute("app.flagged", True)
        for child_index in range(3):
            with tracer.start_as_current_span(f"db.query {child_index}") as child:
                child.set_attribute("db.system", "postgresql")
                if kind == "error" and child_index == 1:
                    child.set_status(Status(StatusCode.ERROR, "connection reset"))
        return trace_id_of(root)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_default_rules_keep_errors_and_flagged_drop_health_sample_the_rest(
    tmp_path: Path, protocol: str
) -> None:
    with RecordingBackend() as backend:
        config = write_config(tmp_path, backend)
        with RefineryProcess(config, DEFAULT_RULES) as node:
            endpoint = node.grpc_endpoint if protocol == "grpc" else node.http_endpoint
            kinds = ["error"] * 8 + ["flagged"] * 6 + ["health"] * 8 + ["plain"] * 60
            with tracer_provider(protocol, endpoint) as provider:
                tracer = provider.get_tracer("e2e")
                traces = {make_trace(tracer, kind, i): kind for i, kind in enumerate(kinds)}
                provider.force_flush()

            def expected_kept(trace_id: str, kind: str) -> bool:
                return kind in ("error", "flagged") or (
                    kind == "plain" and keep_for_rate(trace_id, 10)
                )

            kept = {t for t, kind in traces.items() if expected_kept(t, kind)}
            wait_until(
                lambda: node.metric("refinery_traces_decided_total") == len(traces),
                what="every trace decided",
            )
            wait_until(
                lambda: (
                    node.metric("refinery_export_spans_total", outcome="sent", exporter="otlp")
                    == 4 * len(kept)
                ),
                what="kept traces exported",
            )
            received = backend.by_trace()
            assert set(received) == kept
            for trace_id, spans in received.items():
                kind = traces[trace_id]
                assert len(spans) == 4, "a kept trace arrives complete"
                expected_rate = 10 if kind == "plain" else 1
                expected_reason = {
                    "error": "rules/trace/keep errors",
                    "flagged": "rules/trace/keep flagged transactions",
                    "plain": "rules/trace/sample the rest:emadynamic",
                }[kind]
                roots = [s for s in spans if not s.span.parent_span_id]
                assert len(roots) == 1
                assert roots[0].attributes["meta.span_count"] == 4
                for received_span in spans:
                    attributes = received_span.attributes
                    assert attributes["SampleRate"] == expected_rate
                    assert attributes["meta.refinery.reason"] == expected_reason
                    assert attributes["meta.refinery.send_reason"] == "trace_send_got_root"
                    assert received_span.resource["service.name"] == "shop"
                    assert received_span.scope == "e2e"
            assert node.metric("refinery_spans_received_total") == 4 * len(traces)
            assert node.terminate() == 0


def test_late_spans_follow_their_traces_decision(tmp_path: Path) -> None:
    with RecordingBackend() as backend:
        config = write_config(tmp_path, backend)
        with RefineryProcess(config, DEFAULT_RULES) as node:
            with tracer_provider("grpc", node.grpc_endpoint) as provider:
                tracer = provider.get_tracer("e2e")
                kept_root = tracer.start_span("GET /checkout", kind=trace_api.SpanKind.SERVER)
                kept_root.set_attribute("app.flagged", True)
                kept_root.end()
                dropped_root = tracer.start_span("GET /healthz", kind=trace_api.SpanKind.SERVER)
                dropped_root.set_attribute("http.route", "/healthz")
                dropped_root.end()
                provider.force_flush()
                kept_id, dropped_id = trace_id_of(kept_root), trace_id_of(dropped_root)
                wait_until(
                    lambda: node.metric("refinery_traces_decided_total") == 2,
                    what="both traces decided",
                )
                for root in (kept_root, dropped_root):
                    context = trace_api.set_span_in_context(root)
                    tracer.start_span("late work", context=context).end()
                provider.force_flush()
            wait_until(
                lambda: node.metric("refinery_late_spans_total") == 2, what="late spans counted"
            )
            wait_until(lambda: len(backend.by_trace().get(kept_id, [])) == 2, what="late span")
            assert node.metric("refinery_late_spans_total", decision="kept") == 1
            assert node.metric("refinery_late_spans_total", decision="dropped") == 1
            late = [s for s in backend.by_trace()[kept_id] if s.span.name == "late work"]
            assert late[0].attributes["meta.refinery.send_reason"] == "trace_send_late_span"
            assert late[0].attributes["SampleRate"] == 1
            assert late[0].attributes["meta.refinery.reason"] == (
                "rules/trace/keep flagged transactions"
            )
            assert dropped_id not in backend.by_trace()
            assert node.terminate() == 0


def test_an_error_that_arrives_after_its_trace_was_dropped_is_kept(tmp_path: Path) -> None:
    """The health check's root was dropped (`drop health checks`); its failed child comes late,
    as a retry after a refusal or a slow exporter would bring it. `keep errors` comes first in
    the rules, so the trace would have been kept: the error is kept, and so is what follows."""
    with RecordingBackend() as backend:
        config = write_config(tmp_path, backend)
        with RefineryProcess(config, DEFAULT_RULES) as node:
            with tracer_provider("http", node.http_endpoint) as provider:
                tracer = provider.get_tracer("e2e")
                root = tracer.start_span("GET /healthz", kind=trace_api.SpanKind.SERVER)
                root.set_attribute("http.route", "/healthz")
                root.end()
                provider.force_flush()
                wait_until(
                    lambda: node.metric("refinery_traces_decided_total", decision="dropped") == 1,
                    what="the health check dropped",
                )
                context = trace_api.set_span_in_context(root)
                failed = tracer.start_span("probe the database", context=context)
                failed.set_status(Status(StatusCode.ERROR, "connection refused"))
                failed.end()
                provider.force_flush()
                wait_until(
                    lambda: node.metric("refinery_late_spans_total", decision="rescued") == 1,
                    what="the error rescued",
                )
                tracer.start_span("clean up", context=context).end()
                provider.force_flush()
            trace_id = trace_id_of(root)
            wait_until(lambda: len(backend.by_trace().get(trace_id, [])) == 2, what="both spans")
            spans = {s.span.name: s.attributes for s in backend.by_trace()[trace_id]}
            assert set(spans) == {"probe the database", "clean up"}
            for attributes in spans.values():
                assert attributes["meta.refinery.reason"] == "rules/trace/keep errors"
                assert attributes["meta.refinery.send_reason"] == "trace_send_late_span"
                assert attributes["SampleRate"] == 1
            assert node.metric("refinery_late_spans_total", decision="kept") == 1
            assert node.metric("refinery_late_spans_total", decision="dropped") == 0
            assert node.terminate() == 0


def test_sigterm_decides_and_flushes_every_buffered_trace(tmp_path: Path) -> None:
    keep_all = tmp_path / "keep-all.yaml"
    keep_all.write_text(
        "RulesVersion: 2\nSamplers:\n  __default__:\n    DeterministicSampler:\n"
        "      SampleRate: 1\n"
    )
    with RecordingBackend() as backend:
        config = write_config(tmp_path, backend, trace_timeout="10m")
        with (
            RefineryProcess(config, keep_all) as node,
            tracer_provider("http", node.http_endpoint) as provider,
        ):
            tracer = provider.get_tracer("e2e")
            open_roots = [tracer.start_span(f"job {i}") for i in range(5)]
            for root in open_roots:
                context = trace_api.set_span_in_context(root)
                for child in range(2):
                    tracer.start_span(f"step {child}", context=context).end()
            provider.force_flush()
            wait_until(
                lambda: node.metric("refinery_spans_received_total") == 10,
                what="spans buffered",
            )
            assert backend.spans() == []
            assert node.terminate() == 0
        received = backend.by_trace()
        assert set(received) == {trace_id_of(root) for root in open_roots}
        for spans in received.values():
            assert len(spans) == 2
            for received_span in spans:
                assert received_span.attributes["meta.refinery.send_reason"] == (
                    "trace_send_shutdown"
                )
                assert received_span.attributes["meta.refinery.reason"] == "deterministic/always"
        # Every worker says how many it decided at shutdown; together, all five.
        decided = re.findall(r"shutting down: deciding (\d+) buffered traces", "".join(node.log))
        assert sum(map(int, decided)) == 5
