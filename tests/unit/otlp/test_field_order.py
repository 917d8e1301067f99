"""Any protobuf field order decides exactly as the canonical encoding does.

The same requests are re-encoded (tests/otlp_reorder.py) in descending field-number order (what
the OpenTelemetry Collector writes: a span's status first and its trace_id last, every KeyValue's
value before its key), in seeded random orders, and with protobuf's merge rules in play (a
singular field written twice, a message split in two). Every reader of span bytes must not see
the difference: the split (trace IDs, roots, refused spans), every field a rule can name, the
customer, the dynamic samplers' keys, the decisions, and what a kept trace leaves with.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from refinery_py.assemble import DecisionCache, TraceBuffer
from refinery_py.config.rules import parse_rules
from refinery_py.decide.engine import RulesEngine
from refinery_py.decide.trace_key import TraceKey
from refinery_py.model import SpanBatch
from refinery_py.otlp.customer import customer_of
from refinery_py.otlp.ingest import WALKS, OriginInterner, split_request
from refinery_py.otlp.json import json_to_protobuf, request_to_json
from refinery_py.otlp.lite import SpanHead
from refinery_py.otlp.span_fields import (
    INTRINSIC_FIELDS,
    MARK_ERROR,
    MARK_TRACE_STATE,
    SpanFields,
    span_marks,
)
from refinery_py.otlp.span_view import FieldPlan, WireTrace
from refinery_py.pipeline import Pipeline
from refinery_py.pipeline.marking import Marking
from refinery_py.telemetry import Metrics
from tests.otlp_reorder import Order, reorder_request
from tests.otlp_traffic import FIELDS, RULES, varied_requests
from tests.pipeline_support import Collecting

CUSTOMER_FIELDS = ("customer.id", "app.blob")
KEYS = (
    ("customer.id", "http.route"),
    ("root.customer.id", "root.http.route", "error"),
    ("app.tags", "app.settings", "app.blob", "dup", "SampleRate", "status_code"),
)
VARIANTS: list[tuple[Order, int, bool]] = [
    ("descending", 0, False),
    ("descending", 0, True),
    *[("shuffled", seed, decoys) for seed in range(4) for decoys in (False, True)],
]


@pytest.fixture(scope="module")
def canonical() -> list[bytes]:
    return varied_requests(seed=11, traces=60)


def _variant_id(variant: tuple[Order, int, bool]) -> str:
    order, seed, decoys = variant
    return f"{order}-{seed}" + ("-merged" if decoys else "")


def _reencoded(bodies: list[bytes], variant: tuple[Order, int, bool]) -> list[bytes]:
    order, seed, decoys = variant
    return [
        reorder_request(body, order, seed=seed * 1000 + n, decoys=decoys)
        for n, body in enumerate(bodies)
    ]


def test_the_variants_really_differ_and_mean_the_same(canonical: list[bytes]) -> None:
    for variant in VARIANTS:
        for body, other in zip(canonical, _reencoded(canonical, variant), strict=True):
            assert other != body
            parsed = ExportTraceServiceRequest.FromString(other)
            assert parsed == ExportTraceServiceRequest.FromString(body)
            # With descending order a span's trace_id really is written last.
            if variant[0] == "descending" and not variant[2]:
                canonical_span = split_request(body, OriginInterner()).spans[0]
                span = split_request(other, OriginInterner()).spans[0]
                assert canonical_span.startswith(b"\x0a\x10")
                assert span.endswith(b"\x0a\x10" + canonical_span[2:18])


@dataclass
class Split:
    """What `split_request` made of a list of requests, in a form two encodings can share."""

    trace_ids: list[bytes]
    roots: list[int]
    rejected: int
    spans: list[Span]
    resources: list[Any]
    scopes: list[Any]


def _split(
    bodies: list[bytes], *, validate: bool, walk: bool = WALKS
) -> tuple[Split, list[SpanBatch]]:
    interner = OriginInterner()
    batches = [split_request(body, interner, validate=validate, walk=walk) for body in bodies]
    trace_ids: list[bytes] = []
    roots: list[int] = []
    spans: list[Span] = []
    resources: list[Any] = []
    scopes: list[Any] = []
    for batch in batches:
        roots.extend(len(trace_ids) + position for position in sorted(batch.root_positions))
        trace_ids.extend(batch.trace_ids)
        spans.extend(map(Span.FromString, batch.spans))
        resources.extend(ResourceSpans.FromString(o.resource_fields) for o in batch.origins)
        scopes.extend(ScopeSpans.FromString(o.scope_fields) for o in batch.origins)
    split = Split(trace_ids, roots, sum(b.rejected for b in batches), spans, resources, scopes)
    return split, batches


@pytest.mark.parametrize("walk", [True, False], ids=["walk", "upb"])
@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_split_finds_the_same_traces_roots_and_invalid_spans(
    canonical: list[bytes], variant: tuple[Order, int, bool], validate: bool, walk: bool
) -> None:
    expected, _ = _split(canonical, validate=validate, walk=False)
    assert expected.roots and expected.rejected  # the traffic has both
    actual, _ = _split(_reencoded(canonical, variant), validate=validate, walk=walk)
    assert actual == expected


def _traces(batches: list[SpanBatch], walks: bool) -> list[WireTrace]:
    """Every trace of `batches`, its spans in arrival order, as the buffer would hold it, read
    by one walk per span or by a search per field."""
    grouped: dict[bytes, tuple[list[bytes], list[Any], list[int]]] = {}
    for batch in batches:
        for index, trace_id in enumerate(batch.trace_ids):
            spans, origins, roots = grouped.setdefault(trace_id, ([], [], []))
            if index in batch.root_positions:
                roots.append(len(spans))
            spans.append(batch.spans[index])
            origins.append(batch.origins[index])
    return [
        WireTrace(trace_id, spans, origins, roots[0] if roots else -1, FieldPlan(walks=walks))
        for trace_id, (spans, origins, roots) in grouped.items()
    ]


def _reading(batches: list[SpanBatch], walks: bool = False) -> list[tuple[Any, ...]]:
    """Everything rules can read from each trace: fields of every span, customer, keys."""
    keys = [TraceKey(fields, use_trace_length=True) for fields in KEYS]
    out: list[tuple[Any, ...]] = []
    for trace in _traces(batches, walks):
        fields = [tuple(span.get(field) for field in FIELDS) for span in trace.spans]
        root = trace.root
        root_fields = None if root is None else tuple(root.get(field) for field in FIELDS)
        out.append(
            (
                trace.trace_id,
                fields,
                root_fields,
                customer_of(trace, CUSTOMER_FIELDS),
                [key.build(trace) for key in keys],
            )
        )
    return out


@pytest.mark.parametrize("walks", [True, False], ids=["walk", "search"])
@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_every_field_customer_and_key_reads_the_same(
    canonical: list[bytes], variant: tuple[Order, int, bool], walks: bool
) -> None:
    _, canonical_batches = _split(canonical, validate=True)
    expected = _reading(canonical_batches)
    assert {"acme", "resource-wide", ""} <= {reading[3] for reading in expected}
    _, batches = _split(_reencoded(canonical, variant), validate=True)
    assert _reading(batches, walks) == expected


def test_the_walk_and_the_search_read_the_same(canonical: list[bytes]) -> None:
    _, batches = _split(canonical, validate=True)
    assert _reading(batches, walks=True) == _reading(batches, walks=False)


@pytest.mark.skipif(not WALKS, reason="marks are taken only where spans are walked (compiled)")
@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_marks_say_what_the_walk_finds(
    canonical: list[bytes], variant: tuple[Order, int, bool]
) -> None:
    """A span's mark has its error status and which planned keys it has, as a walk finds them,
    and whether it has a trace_state as upb finds it; a trace read with marks offers the same
    spans for every field as one read without."""
    _, batches = _split(_reencoded(canonical, variant), validate=True)
    plan = FieldPlan(walks=True)
    for field in FIELDS:
        if field not in INTRINSIC_FIELDS:
            plan.slot(field)
    whole = plan.marking(-1)
    covered, screen = whole
    assert covered == (1 << (len(plan.keys) + 1)) - 1  # every key is short
    marked = with_state = 0
    for batch in batches:
        for raw, mark in zip(batch.spans, span_marks(batch.spans, plan, screen), strict=True):
            walked = SpanFields(raw, plan)
            expected = walked.seen << 1 | (MARK_ERROR if walked.status_code == 2 else 0)
            if SpanHead.FromString(raw).HasField("trace_state"):
                expected |= MARK_TRACE_STATE
            assert mark == expected
            marked += mark & ~MARK_TRACE_STATE != 0
            with_state += mark & MARK_TRACE_STATE != 0
    assert marked
    assert with_state
    # Marks that cover only some keys (those samplers asked about) answer for those; a trace
    # asked about another key walks its spans.
    flag_bit = 1 << (plan.slot("app.flagged") + 1)
    partly = plan.marking(flag_bit)
    assert partly[0] == MARK_ERROR | flag_bit
    for some_covered, some_screen in (whole, partly):
        for trace in _traces(batches, walks=True):
            marks = span_marks(trace.raw_spans, plan, some_screen)
            with_marks = WireTrace(
                trace.raw_trace_id,
                trace.raw_spans,
                trace.origins,
                trace.root_index,
                plan,
                marks=marks,
                covered=some_covered,
            )
            for field in ("error", *FIELDS):
                expected_spans = [span.raw for span in trace.spans_with(field)]
                assert [span.raw for span in with_marks.spans_with(field)] == expected_spans


class _NoMarks(Marking):
    def marks(self, spans: list[bytes]) -> list[int] | None:
        return None


class _AlwaysMarks(Marking):
    def marks(self, spans: list[bytes]) -> list[int] | None:
        if not self.plan.walks:
            return None
        self.covered, screen = self.plan.marking(-1)
        return span_marks(spans, self.plan, screen)


def _decide(
    bodies: list[bytes], *, dry_run: bool = False, marking: type[Marking] = Marking
) -> list[tuple[Any, ...]]:
    """Run the pipeline over `bodies` (all accepted, then all decided on a fake clock)."""
    now = [1000.0]
    exporter = Collecting()
    pipeline = Pipeline(
        buffer=TraceBuffer(
            send_delay=2.0,
            trace_timeout=30.0,
            span_limit=1000,
            decisions=DecisionCache(60.0, 1 << 20),
        ),
        decider=RulesEngine(parse_rules(RULES, "rules.yaml")),
        exporters=[exporter],
        metrics=Metrics(),
        customer_fields=CUSTOMER_FIELDS,
        max_memory=1 << 30,
        clock=lambda: now[0],
        dry_run=dry_run,
    )
    pipeline.marking = marking(pipeline.field_plan)
    interner = OriginInterner()
    for body in bodies:
        pipeline.accept(split_request(body, interner), "test")
        now[0] += 0.5
        pipeline.decide_due()
    now[0] += 60
    pipeline.decide_due()
    # The rules ask every span about `error`, which marks answer.
    assert pipeline.marking.asked_bits & MARK_ERROR
    return [
        (
            kept.trace_id,
            kept.decision,
            kept.send_reason,
            kept.customer,
            kept.span_count,
            _exported(kept.payload),
        )
        for kept in exporter.traces
    ]


def _exported(payload: bytes) -> list[tuple[Any, ...]]:
    """The spans of an exported request with their resource and scope, in span-ID order."""
    request = ExportTraceServiceRequest.FromString(payload)
    out = [
        (span.span_id, span, resource_spans.resource, scope_spans.scope)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    return sorted(out, key=lambda item: item[0])


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_decisions_and_exported_spans_are_the_same(
    canonical: list[bytes], variant: tuple[Order, int, bool], dry_run: bool
) -> None:
    expected = _decide(canonical, dry_run=dry_run)
    reasons = {kept[1].reason for kept in expected}
    assert {"rules/trace/keep errors", "rules/trace/keep flagged"} <= reasons
    send_reasons = {kept[2].value for kept in expected}
    assert "trace_send_got_root" in send_reasons
    assert _decide(_reencoded(canonical, variant), dry_run=dry_run) == expected


def test_marking_spans_changes_no_decision(canonical: list[bytes]) -> None:
    assert _decide(canonical, marking=_AlwaysMarks) == _decide(canonical, marking=_NoMarks)


@pytest.mark.parametrize("seed", range(3))
def test_json_in_any_key_order_converts_to_the_canonical_bytes(
    canonical: list[bytes], seed: int
) -> None:
    """So a JSON request decides exactly as the same request in protobuf (tested above)."""
    rng = random.Random(seed)
    for body in canonical:
        document = _shuffled(orjson.loads(request_to_json(body)), rng)
        assert json_to_protobuf(orjson.dumps(document)) == body


def _shuffled(document: object, rng: random.Random) -> object:
    if isinstance(document, dict):
        items = [(key, _shuffled(value, rng)) for key, value in document.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(document, list):
        return [_shuffled(item, rng) for item in document]
    return document
