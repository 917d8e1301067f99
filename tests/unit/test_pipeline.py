"""The pipeline driven synchronously with a fake clock: what reaches exporters, and when."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.assemble import DecisionCache, TraceBuffer
from refinery_py.config.rules import parse_rules
from refinery_py.decide.engine import RulesEngine
from refinery_py.model import Decision, KeptTrace, TraceView
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.pipeline import DECIDE_ERROR_REASON, Pipeline, core
from refinery_py.pipeline.admission import backlog_refusal
from refinery_py.telemetry import Metrics
from tests.otlp_builders import request, span
from tests.pipeline_support import Clock, Collecting

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
        - Name: drop the rest
          Drop: true
"""


def make(
    dry_run: bool = False, max_memory: int = 1 << 30, decider: object = None
) -> tuple[Pipeline, Collecting, Clock, Metrics]:
    clock, exporter, metrics = Clock(), Collecting(), Metrics()
    pipeline = Pipeline(
        buffer=TraceBuffer(
            send_delay=2.0,
            trace_timeout=30.0,
            span_limit=5,
            decisions=DecisionCache(60.0, 1 << 20),
        ),
        decider=decider or RulesEngine(parse_rules(RULES, "r.yaml")),  # type: ignore[arg-type]
        exporters=[exporter],
        metrics=metrics,
        customer_fields=("customer.id",),
        max_memory=max_memory,
        clock=clock,
        dry_run=dry_run,
    )
    return pipeline, exporter, clock, metrics


INTERNER = OriginInterner()


def send(pipeline: Pipeline, *spans: object) -> None:
    body = request(*spans).SerializeToString()  # type: ignore[arg-type]
    assert pipeline.accept(split_request(body, INTERNER), "test").accepted


def exported_attributes(trace: KeptTrace) -> list[dict[str, object]]:
    decoded = ExportTraceServiceRequest.FromString(trace.payload)
    out = []
    for rs in decoded.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                attrs = {}
                for a in s.attributes:
                    kind = a.value.WhichOneof("value")
                    attrs[a.key] = getattr(a.value, kind) if kind else None
                out.append(attrs)
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    result = metrics.registry.get_sample_value(name, labels)
    return result or 0.0


def test_traces_are_decided_after_send_delay_and_only_kept_ones_exported() -> None:
    pipeline, exporter, clock, metrics = make()
    send(pipeline, span(1, 2, 1, error=True, attrs={"customer.id": "acme"}), span(1, 1))
    send(pipeline, span(2, 1))
    pipeline.decide_due()
    assert exporter.traces == []
    clock.now += 2.0
    pipeline.decide_due()
    (kept,) = exporter.traces
    assert kept.trace_id == (1).to_bytes(16, "big")
    assert kept.customer == "acme"
    assert kept.span_count == 2
    assert (
        value(
            metrics,
            "refinery_traces_decided_total",
            decision="dropped",
            send_reason="trace_send_got_root",
        )
        == 1
    )
    by_reason = "refinery_traces_decided_by_reason_total"
    assert value(metrics, by_reason, decision="kept", reason="rules/trace/keep errors") == 1
    assert value(metrics, by_reason, decision="dropped", reason="rules/trace/drop the rest") == 1
    assert value(metrics, "refinery_buffer_budget_bytes") == 1 << 30
    ejected = {"decision": "kept", "send_reason": "trace_send_ejected_memsize"}
    assert metrics.registry.get_sample_value("refinery_traces_decided_total", ejected) == 0
    assert value(metrics, "refinery_spans_waiting") == 0


def test_late_spans_follow_the_decision() -> None:
    pipeline, exporter, clock, metrics = make()
    send(pipeline, span(1, 1, error=True), span(2, 1))
    clock.now += 3
    pipeline.decide_due()
    send(pipeline, span(1, 5, 1), span(2, 5, 1))
    assert len(exporter.traces) == 1, "a late span leaves with the next tick"
    pipeline.decide_due()
    assert [t.send_reason.value for t in exporter.traces] == [
        "trace_send_got_root",
        "trace_send_late_span",
    ]
    assert exported_attributes(exporter.traces[1])[0]["meta.refinery.send_reason"] == (
        "trace_send_late_span"
    )
    assert value(metrics, "refinery_late_spans_total", decision="dropped") == 1
    assert value(metrics, "refinery_late_spans_total", decision="kept") == 1


# RULES with a rule on the root between its two: late roots and late errors both matter.
RESCUE_RULES = RULES.replace(
    "        - Name: drop the rest",
    """        - Name: keep server errors
          SampleRate: 1
          Conditions:
            - Field: root.http.status_code
              Operator: ">="
              Value: 500
              Datatype: int
        - Name: drop the rest""",
)


def test_a_late_error_keeps_its_dropped_trace_from_then_on() -> None:
    pipeline, exporter, clock, metrics = make(decider=RulesEngine(parse_rules(RESCUE_RULES, "r")))
    send(pipeline, span(2, 1), span(2, 2, 1))
    clock.now += 3
    pipeline.decide_due()
    assert exporter.traces == []
    send(pipeline, span(2, 5, 1, error=True))
    send(pipeline, span(2, 6, 1))
    pipeline.flush_exports()
    rescued, following = exporter.traces
    assert rescued.decision == Decision(True, 1, "rules/trace/keep errors")
    assert rescued.send_reason.value == "trace_send_late_span"
    (attributes,) = exported_attributes(rescued)
    assert attributes["meta.refinery.reason"] == "rules/trace/keep errors"
    assert attributes["SampleRate"] == 1
    assert following.decision == rescued.decision, "later spans follow the new decision"
    assert value(metrics, "refinery_late_spans_total", decision="rescued") == 1
    assert value(metrics, "refinery_late_spans_total", decision="kept") == 1
    assert value(metrics, "refinery_late_spans_total", decision="dropped") == 0


def test_a_late_root_is_read_as_the_root() -> None:
    pipeline, exporter, clock, metrics = make(decider=RulesEngine(parse_rules(RESCUE_RULES, "r")))
    send(pipeline, span(3, 2, 1), span(4, 2, 1))
    clock.now += 31  # no root: decided at the trace timeout, and dropped
    pipeline.decide_due()
    send(pipeline, span(3, 1, attrs={"http.status_code": 503}), span(3, 3, 1))
    send(pipeline, span(4, 1, attrs={"http.status_code": 200}))
    pipeline.flush_exports()
    (rescued,) = exporter.traces
    assert rescued.trace_id[-1] == 3 and rescued.span_count == 2
    assert rescued.decision.reason == "rules/trace/keep server errors"
    assert "meta.span_count" not in exported_attributes(rescued)[0], "it counts the whole trace"
    assert value(metrics, "refinery_late_spans_total", decision="rescued") == 2
    assert value(metrics, "refinery_late_spans_total", decision="dropped") == 1


def test_a_dry_run_marks_a_rescued_late_span_kept() -> None:
    pipeline, exporter, clock, metrics = make(dry_run=True)
    send(pipeline, span(2, 1))
    clock.now += 3
    pipeline.decide_due()
    send(pipeline, span(2, 5, 1, error=True), span(3, 1, attrs={"customer.id": "x"}))
    send(pipeline, span(4, 1))
    clock.now += 3
    pipeline.decide_due()
    send(pipeline, span(4, 5, 1))
    pipeline.flush_exports()
    by_span = {
        (t.trace_id[-1], t.send_reason.value): exported_attributes(t)[0] for t in exporter.traces
    }
    assert by_span[(2, "trace_send_late_span")]["meta.refinery.dryrun.kept"] is True
    assert by_span[(2, "trace_send_late_span")]["meta.refinery.reason"] == (
        "rules/trace/keep errors"
    )
    assert by_span[(4, "trace_send_late_span")]["meta.refinery.dryrun.kept"] is False
    assert value(metrics, "refinery_late_spans_total", decision="rescued") == 1
    assert value(metrics, "refinery_late_spans_total", decision="dropped") == 1


class RedecidingFails(RulesEngine):
    def redecide(self, late: TraceView, decision: Decision, now: float) -> Decision | None:
        raise RuntimeError("rescue bug")


def test_a_failing_redecision_leaves_the_decision_and_the_request_alone() -> None:
    engine = RedecidingFails(parse_rules(RESCUE_RULES, "r"))
    pipeline, exporter, clock, metrics = make(decider=engine)
    send(pipeline, span(2, 1))
    clock.now += 3
    pipeline.decide_due()
    send(pipeline, span(2, 5, 1, error=True), span(5, 1))  # accepted (send asserts it)
    pipeline.flush_exports()
    assert exporter.traces == []
    assert pipeline.buffer.span_count == 1
    assert value(metrics, "refinery_decision_failures_total") == 1
    assert value(metrics, "refinery_late_spans_total", decision="dropped") == 1


def test_span_limit_decides_at_once() -> None:
    pipeline, exporter, _, _ = make()
    send(pipeline, *[span(1, i, 1, error=True) for i in range(2, 9)])
    pipeline.flush_exports()
    (kept,) = exporter.traces
    assert kept.send_reason.value == "trace_send_span_limit"
    assert kept.span_count == 7


def test_memory_pressure_decides_the_largest_traces_early() -> None:
    pipeline, exporter, _, _metrics = make(max_memory=4000)
    send(pipeline, *[span(1, i, 1, error=True, attrs={"pad": "x" * 900}) for i in range(2, 6)])
    send(pipeline, span(2, 2, 1, error=True))
    pipeline.flush_exports()
    assert [t.trace_id[-1] for t in exporter.traces] == [1]
    assert exporter.traces[0].send_reason.value == "trace_send_ejected_memsize"
    assert pipeline.buffer.memory <= 4000 * 0.9


def test_dry_run_exports_everything_marked_with_the_decision() -> None:
    pipeline, exporter, clock, _ = make(dry_run=True)
    send(pipeline, span(1, 1, error=True), span(2, 1, attrs={"SampleRate": 3}))
    clock.now += 3
    pipeline.decide_due()
    by_trace = {t.trace_id[-1]: t for t in exporter.traces}
    assert set(by_trace) == {1, 2}
    kept_attrs = exported_attributes(by_trace[1])[0]
    dropped_attrs = exported_attributes(by_trace[2])[0]
    assert kept_attrs["meta.refinery.dryrun.kept"] is True
    assert kept_attrs["SampleRate"] == 1
    assert dropped_attrs["meta.refinery.dryrun.kept"] is False
    assert dropped_attrs["meta.refinery.dryrun.sample_rate"] == 0
    assert dropped_attrs["SampleRate"] == 3  # the incoming rate, untouched by the rules
    assert dropped_attrs["meta.refinery.reason"] == "rules/trace/drop the rest"
    assert by_trace[2].decision.keep and by_trace[2].decision.rate == 1


class Exploding:
    def decide(self, trace: TraceView, now: float) -> Decision:
        raise RuntimeError("sampler bug")

    def count_late(self, decision: Decision, span_count: int, now: float) -> None:
        return None

    def redecide(self, late: TraceView, decision: Decision, now: float) -> Decision | None:
        raise RuntimeError("sampler bug")

    def take_goal_reports(self) -> list[object]:
        return []

    def fields_used(self) -> frozenset[str]:
        return frozenset()


def test_a_failing_decider_keeps_the_trace() -> None:
    pipeline, exporter, clock, _ = make(decider=Exploding())
    send(pipeline, span(1, 1))
    clock.now += 3
    pipeline.decide_due()
    (kept,) = exporter.traces
    assert kept.decision.reason == DECIDE_ERROR_REASON
    assert exported_attributes(kept)[0]["meta.refinery.reason"] == DECIDE_ERROR_REASON


@dataclass
class Backlog:
    queued_bytes: int
    max_bytes: int


def test_a_full_export_queue_refuses_and_says_how_full_in_tenths_of_a_mebibyte() -> None:
    queue = Backlog(100 << 10, 1 << 20)
    assert backlog_refusal([queue], 600 << 10, kept_share=1.0) is None
    refusal = backlog_refusal([queue], 720 << 10, kept_share=1.0)
    assert refusal is not None and refusal.retry_after > 0
    assert "holds 0.1 of its 1.0 MiB and the buffer ~0.7 MiB more" in refusal.message


def test_overload_refuses_with_a_retry_hint() -> None:
    pipeline, _exporter, _, _ = make()
    pipeline.lag = 5.0
    body = request(span(1, 1)).SerializeToString()
    admission = pipeline.accept(split_request(body, INTERNER), "test")
    assert not admission.accepted
    assert admission.retry_after >= 1
    assert "behind" in admission.message
    assert pipeline.buffer.span_count == 0


class FailsOnce(Collecting):
    """An exporter with a bug that shows once (what no real part produces on demand)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def offer(self, trace: KeptTrace) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug")
        super().offer(trace)


async def test_an_unexpected_error_costs_one_trace_never_the_ticker() -> None:
    pipeline, _, clock, metrics = make()
    exporter = FailsOnce()
    pipeline.exporters = [exporter]
    send(pipeline, span(1, 1, error=True), span(2, 1, error=True))  # kept roots, due in 2 s
    clock.now += 3.0
    ticker = asyncio.create_task(pipeline.run())
    for _ in range(200):
        if exporter.traces:
            break
        await asyncio.sleep(0.01)
    assert not ticker.done(), "the ticker carries on"
    assert len(exporter.traces) == 1, "the trace after the failing one was decided"
    assert metrics.decision_failures._value.get() == 1
    assert metrics.decision_failed_spans._value.get() == 1
    await pipeline.shutdown(1.0)
    await ticker


def test_late_spans_of_many_requests_leave_together_at_the_tick() -> None:
    # Offered one request at a time, they made an export request each.
    pipeline, exporter, clock, _ = make()
    send(pipeline, *[span(t, 1, error=True) for t in range(1, 21)])
    clock.now += 3
    pipeline.decide_due()
    assert len(exporter.traces) == 20
    for trace in range(1, 21):
        send(pipeline, span(trace, 5, 1))
    assert len(exporter.traces) == 20
    pipeline.decide_due()
    late = exporter.traces[20:]
    assert sorted(t.trace_id[-1] for t in late) == list(range(1, 21))
    assert {t.send_reason.value for t in late} == {"trace_send_late_span"}


def test_kept_traces_do_not_wait_for_the_tick_past_a_mebibyte() -> None:
    # Ticks run late exactly when stress relief keeps traces on arrival: the outbox is bounded.
    pipeline, exporter, _, _ = make()
    pad = {"pad": "x" * 1000}
    for trace in range(1, 400):  # over the span limit at once: kept without a tick
        send(pipeline, *[span(trace, i, 1, error=True, attrs=pad) for i in range(2, 9)])
    assert exporter.traces, "offered before any tick"
    assert sum(len(t.payload) for t in exporter.traces) >= core.OUTBOX_MAX_BYTES
    waiting = 399 - len(exporter.traces)
    assert waiting > 0 and waiting * 7 * 1000 < core.OUTBOX_MAX_BYTES
