"""Run recorded requests through the trace buffer and the rules, with the spans' own clock.

Time is the latest span end time seen so far (never going backwards), so a trace is decided when
the recording says `send_delay` has passed after its root, or `trace_timeout` after its first
span, exactly as the server would have decided it. Traces still buffered when the recording ends
are decided as if their deadlines had passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.assemble import BufferedTrace, DecisionCache, TraceBuffer
from refinery_py.assemble.buffer import LateSpans
from refinery_py.decide.engine import RulesEngine
from refinery_py.otlp.customer import customer_of
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.otlp.span_fields import FieldPlan
from refinery_py.otlp.span_view import WireTrace

_NANOS = 1e-9


@dataclass(frozen=True, slots=True)
class ReplayedTrace:
    """One trace's decision in the replay."""

    trace_id: str
    target: str
    keep: bool
    sample_rate: int
    reason: str
    span_count: int
    customer: str
    send_reason: str


@dataclass(slots=True)
class ReplayResult:
    """Every decision, and what the recording spanned."""

    traces: list[ReplayedTrace] = field(default_factory=list)
    spans: int = 0
    late_spans: int = 0
    rescued_spans: int = 0
    """Late spans of dropped traces kept because they met an earlier keep rule (see
    `RulesBasedSampler.redecide`), as the pipeline keeps them."""
    rejected_spans: int = 0
    first_time: float | None = None
    last_time: float | None = None

    @property
    def duration(self) -> float:
        """Seconds between the earliest span start and the latest span end (at least 1 ms)."""
        if self.first_time is None or self.last_time is None:
            return 0.0
        return max(self.last_time - self.first_time, 0.001)


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    send_delay: float = 2.0
    trace_timeout: float = 60.0
    span_limit: int = 32000
    customer_fields: Sequence[str] = ("customer.id",)


def replay(
    requests: Iterable[bytes], engine: RulesEngine, settings: ReplaySettings
) -> ReplayResult:
    """Decide every trace in `requests` (serialized ExportTraceServiceRequests, in order).

    Raises ValueError when a request is not valid protobuf.
    """
    return _Replay(engine, settings).run(requests)


class _Replay:
    def __init__(self, engine: RulesEngine, settings: ReplaySettings) -> None:
        self.engine = engine
        self.field_plan = FieldPlan()
        self.settings = settings
        self.result = ReplayResult()
        self.buffer = TraceBuffer(
            send_delay=settings.send_delay,
            trace_timeout=settings.trace_timeout,
            span_limit=settings.span_limit,
            decisions=DecisionCache(2 * settings.trace_timeout, 1 << 30),
        )

    def run(self, requests: Iterable[bytes]) -> ReplayResult:
        result, buffer = self.result, self.buffer
        origins = OriginInterner()
        now = float("-inf")
        for body in requests:
            start, end = _time_range(body)
            if start is not None and end is not None:
                first = result.first_time
                result.first_time = start if first is None else min(first, start)
                result.last_time = max(result.last_time or end, end)
                now = max(now, end)
            # The request arrived no earlier than its spans ended: the server's ticker would have
            # decided every trace due by then before this request reached the buffer.
            for trace in buffer.due(now):
                self.decide(trace, now)
            batch = split_request(body, origins, validate=False)
            result.spans += batch.span_count
            result.rejected_spans += batch.rejected
            arrivals = buffer.add(batch, now)
            for trace_id, late in arrivals.late.items():
                result.late_spans += len(late.spans)
                self.follow_late(trace_id, late, now)
            for trace in arrivals.over_limit:
                self.decide(trace, now)
        for trace in buffer.due(float("inf")):
            self.decide(trace, max(now, trace.deadline))
        return result

    def follow_late(self, trace_id: bytes, late: LateSpans, now: float) -> None:
        """What the pipeline does with late spans: a dropped trace's may rescue it."""
        decision = late.decided.decision
        if not decision.keep:
            view = WireTrace(trace_id, late.spans, late.origins, late.root_index, self.field_plan)
            rescued = self.engine.redecide(view, decision, now)
            if rescued is not None and rescued.keep:
                self.buffer.decisions.replace(trace_id, rescued, late.decided.send_reason)
                self.result.rescued_spans += len(late.spans)
                return
        self.engine.count_late(decision, len(late.spans), now)

    def decide(self, trace: BufferedTrace, now: float) -> None:
        view = WireTrace(
            trace.trace_id, trace.spans, trace.origins, trace.root_index, self.field_plan
        )
        decision = self.engine.decide(view, now)
        self.buffer.decisions.record(trace.trace_id, decision, trace.reason, now)
        self.result.traces.append(
            ReplayedTrace(
                trace_id=view.trace_id,
                target=self.engine.target_of(view),
                keep=decision.keep,
                sample_rate=decision.rate,
                reason=decision.reason,
                span_count=len(trace.spans),
                customer=customer_of(view, self.settings.customer_fields),
                send_reason=trace.reason.value,
            )
        )


def _time_range(body: bytes) -> tuple[float | None, float | None]:
    """Earliest start and latest end (epoch seconds) of the spans in a request."""
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise ValueError(f"not a valid OTLP ExportTraceServiceRequest: {exc}") from None
    first = last = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                if start and (not first or start < first):
                    first = start
                last = max(last, end, start)
    if not last:
        return None, None
    return (first or last) * _NANOS, last * _NANOS
