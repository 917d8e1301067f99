"""The trace buffer with a fake clock: completion by root + send_delay, timeout, span limit."""

from __future__ import annotations

import random

from refinery_py.assemble import DecisionCache, TraceBuffer
from refinery_py.model import Decision, Origin, SendReason, SpanBatch

ORIGIN = Origin(b"", b"")


def batch(*spans: tuple[int, int, bool]) -> SpanBatch:
    """Spans as (trace number, span number, is_root)."""
    out = SpanBatch()
    for index, (trace, span, is_root) in enumerate(spans):
        out.trace_ids.append(trace.to_bytes(16, "big"))
        out.spans.append(b"span-%d-%d" % (trace, span))
        out.origins.append(ORIGIN)
        if is_root:
            out.root_positions.add(index)
    return out


def make_buffer(span_limit: int = 100) -> TraceBuffer:
    return TraceBuffer(
        send_delay=2.0,
        trace_timeout=60.0,
        span_limit=span_limit,
        decisions=DecisionCache(ttl=120.0, max_bytes=1 << 20),
    )


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def test_trace_is_due_send_delay_after_its_root() -> None:
    buffer = make_buffer()
    buffer.add(batch((1, 1, False), (1, 2, False)), now=100.0)
    buffer.add(batch((1, 3, True)), now=105.0)
    assert buffer.due(106.9) == []
    (trace,) = buffer.due(107.0)
    assert trace.trace_id == tid(1)
    assert trace.spans == [b"span-1-1", b"span-1-2", b"span-1-3"]
    assert trace.root_index == 2
    assert trace.reason is SendReason.GOT_ROOT
    assert buffer.span_count == 0
    assert buffer.memory == 0


def test_trace_without_root_expires_after_the_timeout_from_its_first_span() -> None:
    buffer = make_buffer()
    buffer.add(batch((1, 1, False)), now=10.0)
    buffer.add(batch((1, 2, False)), now=50.0)
    assert buffer.due(69.9) == []
    (trace,) = buffer.due(70.0)
    assert trace.reason is SendReason.EXPIRED
    assert trace.root_index == -1
    assert len(trace.spans) == 2


def test_root_arriving_near_the_timeout_does_not_postpone_it() -> None:
    buffer = make_buffer()
    buffer.add(batch((1, 1, False)), now=0.0)
    buffer.add(batch((1, 2, True)), now=59.0)
    (trace,) = buffer.due(60.0)
    assert trace.reason is SendReason.EXPIRED
    assert buffer.due(61.0) == []


def test_span_limit_decides_at_once_and_keeps_the_same_batch_together() -> None:
    buffer = make_buffer(span_limit=3)
    buffer.add(batch((1, 1, False), (1, 2, False)), now=0.0)
    arrivals = buffer.add(batch((1, 3, False), (1, 4, False), (1, 5, False), (2, 1, True)), 1.0)
    (trace,) = arrivals.over_limit
    assert trace.reason is SendReason.SPAN_LIMIT
    assert len(trace.spans) == 5
    assert list(buffer.traces) == [tid(2)]
    assert buffer.span_count == 1


def test_spans_of_decided_traces_come_back_as_late() -> None:
    buffer = make_buffer()
    buffer.decisions.record(tid(7), Decision(True, 5, "r"), SendReason.GOT_ROOT, now=0.0)
    buffer.decisions.record(tid(8), Decision(False, 5, "r"), SendReason.GOT_ROOT, now=0.0)
    arrivals = buffer.add(batch((7, 1, False), (8, 1, False), (7, 2, False), (9, 1, True)), 1.0)
    assert set(arrivals.late) == {tid(7), tid(8)}
    assert arrivals.late[tid(7)].spans == [b"span-7-1", b"span-7-2"]
    assert arrivals.late[tid(7)].decided.decision.rate == 5
    assert not arrivals.late[tid(8)].decided.decision.keep
    assert list(buffer.traces) == [tid(9)]
    assert buffer.span_count == 1


def test_drain_returns_everything_with_the_shutdown_reason() -> None:
    buffer = make_buffer()
    buffer.add(batch((1, 1, True), (2, 1, False), (3, 1, False)), now=0.0)
    drained = buffer.drain(SendReason.SHUTDOWN)
    assert sorted(t.trace_id for t in drained) == [tid(1), tid(2), tid(3)]
    assert {t.reason for t in drained} == {SendReason.SHUTDOWN}
    assert buffer.span_count == 0
    assert buffer.due(1e9) == []


def test_eject_removes_the_largest_traces_first_until_under_target() -> None:
    buffer = make_buffer()
    buffer.add(batch(*[(1, i, False) for i in range(10)]), now=0.0)
    buffer.add(batch((2, 1, False)), now=0.0)
    buffer.add(batch(*[(3, i, False) for i in range(5)]), now=0.0)
    one_trace = buffer.memory
    ejected = buffer.eject(one_trace - 1)
    assert [t.trace_id for t in ejected] == [tid(1)]
    assert ejected[0].reason is SendReason.EJECTED_MEMSIZE
    assert buffer.eject(10**9) == []


def test_memory_accounting_returns_to_zero() -> None:
    buffer = make_buffer()
    buffer.add(batch((1, 1, False), (2, 1, True), (1, 2, True)), now=0.0)
    assert buffer.memory > 0
    buffer.due(1000.0)
    assert buffer.memory == 0
    assert buffer.span_count == 0
    assert buffer.traces == {}


def test_next_deadline() -> None:
    buffer = make_buffer()
    assert buffer.next_deadline() is None
    buffer.add(batch((1, 1, False)), now=5.0)
    assert buffer.next_deadline() == 65.0
    buffer.add(batch((1, 2, True)), now=6.0)
    assert buffer.next_deadline() == 8.0


def test_deadlines_out_of_arrival_order_are_each_due_at_their_time() -> None:
    """Deadlines are queued in arrival order when that is deadline order, so check a mix that is
    not: a clock that steps back, and send_delay changed between arrivals."""
    rng = random.Random(13)
    buffer = make_buffer(span_limit=1000)
    expected: dict[bytes, float] = {}
    now = 100.0
    for number in range(400):
        now += rng.uniform(-0.5, 1.0)
        buffer.send_delay = rng.choice((0.5, 2.0, 7.0))
        has_root = rng.random() < 0.7
        buffer.add(batch((number, 1, False)), now=now)
        deadline = now + buffer.trace_timeout
        if has_root:
            root_at = now + rng.uniform(0.0, 3.0)
            buffer.add(batch((number, 2, True)), now=root_at)
            deadline = min(deadline, root_at + buffer.send_delay)
        expected[tid(number)] = deadline
    decided: dict[bytes, float] = {}
    clock = 100.0
    while expected.keys() - decided.keys():
        pending = min(d for t, d in expected.items() if t not in decided)
        next_deadline = buffer.next_deadline()
        assert next_deadline is not None and next_deadline <= pending
        clock += rng.uniform(0.0, 1.5)
        for trace in buffer.due(clock):
            assert trace.trace_id not in decided
            decided[trace.trace_id] = clock
        assert [t for t, d in expected.items() if d <= clock and t not in decided] == []
    assert all(expected[t] <= at for t, at in decided.items())
    assert buffer.next_deadline() is None or buffer.due(1e9) == []
