"""The buffer's side of a handoff: traces leave with their ages and arrive keeping deadlines."""

from __future__ import annotations

from refinery_py.assemble import DecisionCache, TraceBuffer
from refinery_py.model import Decision, HandedOffTrace, Origin, SendReason, SpanBatch

ORIGIN = Origin(b"", b"")


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def make_buffer() -> TraceBuffer:
    return TraceBuffer(
        send_delay=2.0,
        trace_timeout=60.0,
        span_limit=5,
        decisions=DecisionCache(ttl=120.0, max_bytes=1 << 20),
    )


def one_span(trace: int, is_root: bool = False) -> SpanBatch:
    batch = SpanBatch([tid(trace)], [b"span-%d" % trace], [ORIGIN])
    if is_root:
        batch.root_positions.add(0)
    return batch


def test_released_traces_leave_and_the_rest_stay() -> None:
    buffer = make_buffer()
    for n in range(10):
        buffer.add(one_span(n), now=100.0)
    gone = buffer.release(lambda trace_id: trace_id[-1] % 2 == 0)
    assert sorted(t.trace_id[-1] for t in gone) == [1, 3, 5, 7, 9]
    assert sorted(buffer.traces) == [tid(n) for n in (0, 2, 4, 6, 8)]
    assert buffer.span_count == 5
    assert buffer.due(161.0) and not buffer.traces  # released traces never come due here


def test_an_adopted_trace_keeps_its_deadlines() -> None:
    buffer = make_buffer()
    handed = HandedOffTrace(tid(1), [b"a", b"root"], [ORIGIN, ORIGIN], 1, age=10.0, root_age=0.5)
    buffer.adopt([handed], now=200.0)
    assert buffer.due(201.4) == []  # the root came 0.5 s ago: due 1.5 s from now
    (trace,) = buffer.due(201.5)
    assert trace.reason is SendReason.GOT_ROOT
    assert trace.spans == [b"a", b"root"] and trace.root_index == 1
    assert buffer.memory == 0 and buffer.span_count == 0

    buffer.adopt([HandedOffTrace(tid(2), [b"x"], [ORIGIN], -1, age=59.0, root_age=None)], 300.0)
    assert buffer.due(300.9) == []
    (expired,) = buffer.due(301.0)
    assert expired.reason is SendReason.EXPIRED


def test_an_adopted_part_joins_the_part_that_came_straight_here() -> None:
    buffer = make_buffer()
    buffer.add(one_span(1, is_root=True), now=100.0)  # due at 102
    earlier = HandedOffTrace(tid(1), [b"early"], [ORIGIN], -1, age=30.0, root_age=None)
    buffer.adopt([earlier], now=101.0)
    (trace,) = buffer.due(102.0)
    assert trace.spans == [b"span-1", b"early"]
    assert trace.root_index == 0
    assert trace.first_seen == 71.0


def test_an_adopted_trace_already_decided_here_is_late() -> None:
    buffer = make_buffer()
    buffer.decisions.record(tid(1), Decision(True, 1, "r"), SendReason.GOT_ROOT, 100.0)
    arrivals = buffer.adopt([HandedOffTrace(tid(1), [b"x"], [ORIGIN], -1, 1.0, None)], 101.0)
    assert list(arrivals.late) == [tid(1)]
    assert not buffer.traces


def test_an_adopted_trace_over_the_span_limit_is_decided_at_once() -> None:
    buffer = make_buffer()
    spans = [b"s%d" % i for i in range(6)]
    arrivals = buffer.adopt([HandedOffTrace(tid(1), spans, [ORIGIN] * 6, -1, 1.0, None)], 1.0)
    assert [t.reason for t in arrivals.over_limit] == [SendReason.SPAN_LIMIT]
    assert buffer.memory == 0


def test_released_decisions_carry_their_age() -> None:
    cache = DecisionCache(ttl=120.0, max_bytes=1 << 20)
    cache.record(tid(1), Decision(True, 1, "r"), SendReason.GOT_ROOT, 100.0)
    cache.record(tid(2), Decision(False, 5, "r"), SendReason.EXPIRED, 103.0)
    released = cache.release(lambda trace_id: trace_id == tid(2), now=110.0)
    assert [(t, age) for t, _, age in released] == [(tid(1), 10.0)]
    assert cache.get(tid(1)) is None and cache.get(tid(2)) is not None
