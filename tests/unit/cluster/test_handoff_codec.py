"""The handoff record: traces with their ages, and decisions, survive the trip exactly."""

from __future__ import annotations

import struct

import pytest

from refinery_py.cluster.handoff_codec import decode_handoffs, encode_handoff
from refinery_py.model import (
    Decision,
    HandedOffDecision,
    HandedOffTrace,
    Handoff,
    Origin,
    SendReason,
)
from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.ingest import OriginInterner

A = Origin(b"\x0a\x02r1", b"\x0a\x02s1")
B = Origin(b"\x0a\x02r2", b"")


def sample() -> Handoff:
    return Handoff(
        traces=[
            HandedOffTrace(b"\x01" * 16, [b"one", b"two", b"root"], [A, B, A], 2, 1.5, 0.25),
            HandedOffTrace(b"\x02" * 16, [b"lonely"], [B], -1, 30.0, None),
        ],
        decisions=[
            HandedOffDecision(
                b"\x03" * 16,
                Decision(True, 10, "rules/trace/x", "k", "t:s"),
                SendReason.GOT_ROOT,
                4.0,
            ),
            HandedOffDecision(
                b"\x04" * 16,
                Decision(False, 10, "rules/trace/x", "k", "t:s"),
                SendReason.EXPIRED,
                0.5,
            ),
            HandedOffDecision(
                b"\x05" * 16,
                Decision(True, 10, "rules/trace/x", "k", "t:s"),
                SendReason.GOT_ROOT,
                9.0,
            ),
        ],
    )


def test_a_handoff_round_trips() -> None:
    original = sample()
    decoded = decode_handoffs(encode_handoff(original) * 2, OriginInterner())
    assert len(decoded.traces) == 4 and len(decoded.decisions) == 6
    for got, want in zip(decoded.traces[:2], original.traces, strict=True):
        assert (got.trace_id, got.spans, got.root_index) == (
            want.trace_id,
            want.spans,
            want.root_index,
        )
        assert [(o.resource_fields, o.scope_fields) for o in got.origins] == [
            (o.resource_fields, o.scope_fields) for o in want.origins
        ]
        assert got.age == pytest.approx(want.age)
        assert got.root_age == (None if want.root_age is None else pytest.approx(want.root_age))
    for got_decision, want_decision in zip(decoded.decisions[:3], original.decisions, strict=True):
        assert got_decision.trace_id == want_decision.trace_id
        assert got_decision.decision == want_decision.decision
        assert got_decision.send_reason is want_decision.send_reason
        assert got_decision.age == pytest.approx(want_decision.age)


@pytest.mark.parametrize("cut", [1, 7, 30, -5, -1])
def test_a_damaged_handoff_is_refused(cut: int) -> None:
    body = encode_handoff(sample())
    with pytest.raises(MalformedPayload):
        decode_handoffs(body[:cut], OriginInterner())


def test_garbage_metadata_is_refused() -> None:
    body = bytearray(encode_handoff(sample()))
    body[12:14] = b"[]"  # the metadata must be an object
    with pytest.raises(MalformedPayload):
        decode_handoffs(bytes(body), OriginInterner())


def _record(meta: bytes, decisions: int = 0, rest: bytes = b"") -> bytes:
    body = struct.pack("<I", len(meta)) + meta + struct.pack("<I", decisions) + rest
    return b"RPH1" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    "body",
    [
        _record(b"{}", 0xFFFFFFFF),  # a count no body could hold: refused, not allocated
        _record(b"{}", 2, bytes(16 * 2 + 3)),  # the entries end mid-item
        _record(b'{"traces": 5}'),
        _record(b'{"decisions": {"a": 1}}'),
        _record(b'{"decisions": [[true, 1, "r", "k", "s", ["trace_send_got_root"]]]}'),
        _record(b'{"traces": [[1, 2]], "decisions": null}'),
    ],
    ids=["huge count", "torn entries", "traces", "decisions", "send reason", "null"],
)
def test_malformed_handoffs_are_refused_not_raised(body: bytes) -> None:
    """Found by the fault tests' fuzzer: metadata of the wrong shape raised TypeError (a 500 at
    the peer door) and a damaged decision count allocated without bound (a hang)."""
    with pytest.raises(MalformedPayload):
        decode_handoffs(body, OriginInterner())
