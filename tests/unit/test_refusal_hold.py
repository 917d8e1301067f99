"""Decisions wait for refused spans: RefusalHold alone, then the pipeline under a refusal."""

from __future__ import annotations

import pytest

from refinery_py.config.rules import parse_rules
from refinery_py.decide.engine import RulesEngine
from refinery_py.otlp.ingest import split_request
from refinery_py.pipeline.hold import HOLD_MARGIN, MAX_HOLD, RETRIES_WAITED, RefusalHold
from tests.otlp_builders import request, span
from tests.unit.test_pipeline import INTERNER, RESCUE_RULES, make, send, value


def test_no_refusal_no_wait() -> None:
    assert RefusalHold().cutoff(100.0) == 100.0


def test_traces_due_during_refusals_wait_until_the_last_refused_spans_may_be_back() -> None:
    hold = RefusalHold()
    hold.refused(2.0, now=10.0)
    back = 10.0 + 2.0 + HOLD_MARGIN
    assert hold.cutoff(11.0) == 10.0, "due before the refusals: decided; due since: waiting"
    assert hold.cutoff(back - 0.01) == 10.0
    assert hold.cutoff(back) == back


def test_a_retry_refused_again_extends_the_wait_up_to_retries_waited_waits() -> None:
    hold = RefusalHold()
    wait = 2.0 + HOLD_MARGIN
    hold.refused(2.0, now=10.0)
    hold.refused(2.0, now=12.5)  # the retry, refused again
    assert hold.cutoff(12.9) == 10.0, "still waiting for the first refusal's spans"
    assert hold.cutoff(14.0) == 14.0 - RETRIES_WAITED * wait
    assert hold.cutoff(12.5 + wait) == 12.5 + wait, "the retry's spans are back"
    for now in (20.0, 22.5, 25.0, 27.5):  # refused again and again
        hold.refused(2.0, now)
    assert hold.cutoff(22.0) == 20.0
    assert hold.cutoff(29.0) == 29.0 - RETRIES_WAITED * wait


def test_refusals_further_apart_than_their_wait_are_separate_runs() -> None:
    hold = RefusalHold()
    hold.refused(1.0, now=10.0)
    hold.refused(1.0, now=20.0)
    assert hold.cutoff(20.5) == 20.0


def test_no_decision_waits_longer_than_max_hold() -> None:
    hold = RefusalHold()
    for second in range(40):
        hold.refused(30.0, now=float(second))
    assert hold.cutoff(39.0) == 39.0 - MAX_HOLD


def test_a_max_hold_of_zero_never_waits() -> None:
    hold = RefusalHold(0.0)
    hold.refused(2.0, now=10.0)
    assert hold.cutoff(10.0) == 10.0
    assert hold.cutoff(11.0) == 11.0


def test_a_shorter_max_hold_caps_the_wait() -> None:
    hold = RefusalHold(1.5)
    for now in (10.0, 11.0, 12.0, 13.0):
        hold.refused(2.0, now)
    assert hold.cutoff(13.0) == 13.0 - 1.5


@pytest.mark.parametrize("hint", [600.0, -1.0])
def test_any_hint_gives_a_bounded_wait(hint: float) -> None:
    hold = RefusalHold()
    hold.refused(hint, now=0.0)
    assert hold.cutoff(0.5) == 0.0
    assert hold.cutoff(MAX_HOLD) == MAX_HOLD


def test_an_error_refused_then_retried_still_keeps_its_whole_trace() -> None:
    """The root is accepted; the request with the error is refused (decisions are behind) and
    comes back after the retry hint, after the root's deadline: the trace waits for it."""
    pipeline, exporter, clock, metrics = make(decider=RulesEngine(parse_rules(RESCUE_RULES, "r")))
    send(pipeline, span(7, 1), span(7, 2, 1))
    clock.now += 1.0
    pipeline.lag = 5.0
    body = request(span(7, 3, 1, error=True)).SerializeToString()
    refused = pipeline.accept(split_request(body, INTERNER), "test")
    assert not refused.accepted
    pipeline.lag = 0.0
    clock.now += 1.5  # past the root's deadline (send_delay 2 s)
    pipeline.decide_due()
    assert exporter.traces == [], "the trace waits for the refused spans"
    assert value(metrics, "refinery_decision_hold_seconds") == 1.5
    clock.now += refused.retry_after - 1.0
    send(pipeline, span(7, 3, 1, error=True))  # the retry
    clock.now += HOLD_MARGIN + 0.5
    pipeline.decide_due()
    (kept,) = exporter.traces
    assert kept.span_count == 3
    assert kept.decision.reason == "rules/trace/keep errors"
    assert value(metrics, "refinery_late_spans_total") == 0
    assert value(metrics, "refinery_decision_hold_seconds") == 0


def test_a_buffer_at_half_its_budget_does_not_wait() -> None:
    pipeline, exporter, clock, metrics = make(
        decider=RulesEngine(parse_rules(RESCUE_RULES, "r")), max_memory=2000
    )
    send(pipeline, span(7, 1, attrs={"pad": "x" * 900}))
    pipeline.hold.refused(2.0, clock.now)
    clock.now += 2.5
    pipeline.decide_due()
    assert len(exporter.traces) == 0 and pipeline.buffer.span_count == 0, "decided, dropped"
    assert value(metrics, "refinery_decision_hold_seconds") == 0


def test_without_refusals_traces_are_decided_at_their_deadline() -> None:
    pipeline, exporter, clock, _ = make(decider=RulesEngine(parse_rules(RESCUE_RULES, "r")))
    send(pipeline, span(8, 1, error=True))
    clock.now += 2.0
    pipeline.decide_due()
    assert len(exporter.traces) == 1
