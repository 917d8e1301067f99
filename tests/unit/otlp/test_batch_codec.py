from __future__ import annotations

import struct

import pytest

from refinery_py.model import Origin, SpanBatch
from refinery_py.otlp.batch_codec import (
    decode_span_batches,
    encode_selected,
    encode_span_batch,
    is_span_batch,
)
from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.ingest import OriginInterner, split_request
from tests.otlp_builders import request, span


def batch_of(*messages: object) -> object:
    interner = OriginInterner()
    parts = [split_request(m.SerializeToString(), interner) for m in messages]  # type: ignore[attr-defined]
    first = parts[0]
    for part in parts[1:]:
        offset = len(first.spans)
        first.trace_ids += part.trace_ids
        first.spans += part.spans
        first.origins += part.origins
        first.root_positions |= {offset + r for r in part.root_positions}
    return first


def test_round_trip_keeps_spans_ids_origins_and_roots() -> None:
    batch = batch_of(
        request(span(1, 1), span(1, 2, 1, attrs={"k": "v"}), service="a"),
        request(span(2, 1, 9), span(3, 3), service="b"),
    )
    encoded = encode_span_batch(batch)  # type: ignore[arg-type]
    assert is_span_batch(encoded)
    decoded = decode_span_batches(encoded + encoded, OriginInterner())
    assert decoded.spans == batch.spans * 2  # type: ignore[attr-defined]
    assert decoded.trace_ids == batch.trace_ids * 2  # type: ignore[attr-defined]
    assert decoded.root_positions == {0, 3, 4, 7}
    services = [o.resource_fields for o in decoded.origins]
    assert services == [o.resource_fields for o in batch.origins] * 2  # type: ignore[attr-defined]
    assert decoded.origins[0] is decoded.origins[4]  # interned


@pytest.mark.parametrize("cut", [3, 10, 25, -1])
def test_damaged_bodies_are_refused(cut: int) -> None:
    encoded = encode_span_batch(batch_of(request(span(1, 1), span(1, 2, 1))))  # type: ignore[arg-type]
    with pytest.raises(MalformedPayload):
        decode_span_batches(encoded[:cut], OriginInterner())


def test_bad_magic_is_refused() -> None:
    encoded = encode_span_batch(batch_of(request(span(1, 1))))  # type: ignore[arg-type]
    with pytest.raises(MalformedPayload, match="magic"):
        decode_span_batches(b"XXXX" + encoded[4:], OriginInterner())


def _record(count: int, origins: int, roots: int, rest: bytes) -> bytes:
    return b"RPB1" + struct.pack("<IIII", 12 + len(rest), count, origins, roots) + rest


@pytest.mark.parametrize(
    ("count", "origins", "roots", "rest"),
    [
        (0xFFFFFFFF, 0, 0, b""),  # a count no body could hold: refused, not allocated
        (3, 1, 0, bytes(8) + bytes(16 * 3) + b"\x00"),  # the indexes end mid-item
        (1, 1, 0xFFFFFFFF, bytes(8) + bytes(16) + bytes(2)),
        (0, 0xFFFFFFFF, 0, bytes(64)),  # origins past the record's end
    ],
    ids=["huge span count", "torn indexes", "huge root count", "huge origin count"],
)
def test_counts_that_do_not_fit_the_record_are_refused(
    count: int, origins: int, roots: int, rest: bytes
) -> None:
    """Found by the fault tests' fuzzer: the counts were trusted before the lengths, so a
    damaged header allocated without bound (a hang) or raised ValueError (a 500)."""
    with pytest.raises(MalformedPayload):
        decode_span_batches(_record(count, origins, roots, rest), OriginInterner())


def test_more_origins_than_a_record_holds_go_in_several_records() -> None:
    # A request may carry a resource (or scope) per span; a record's table holds 65,535.
    count = 70_000
    batch = SpanBatch(
        [bytes([n % 251 + 1]) * 16 for n in range(count)],
        [b"span-%d" % n for n in range(count)],
        [Origin(b"resource-%d" % n, b"scope") for n in range(count)],
    )
    batch.root_positions = {0, 65_534, 65_535, count - 1}
    encoded = encode_span_batch(batch)
    decoded = decode_span_batches(encoded, OriginInterner(limit=1 << 20))
    assert decoded.spans == batch.spans
    assert decoded.trace_ids == batch.trace_ids
    assert [o.resource_fields for o in decoded.origins] == [
        b"resource-%d" % n for n in range(count)
    ]
    assert decoded.root_positions == batch.root_positions


def test_a_selection_encodes_as_the_batch_of_just_those_spans() -> None:
    batch = batch_of(
        request(span(1, 1), span(1, 2, 1), span(2, 1), service="a"),
        request(span(3, 1), span(2, 2, 1), span(3, 2, 1), service="b"),
    )
    picks = [1, 2, 3, 5]  # spans 2 and 3 are roots: positions 1 and 2 of the selection
    encoded = encode_selected(batch, picks, [1, 2])  # type: ignore[arg-type]
    decoded = decode_span_batches(encoded, OriginInterner())
    assert decoded.spans == [batch.spans[i] for i in picks]  # type: ignore[attr-defined]
    assert decoded.trace_ids == [batch.trace_ids[i] for i in picks]  # type: ignore[attr-defined]
    assert [o.resource_fields for o in decoded.origins] == [
        batch.origins[i].resource_fields  # type: ignore[attr-defined]
        for i in picks
    ]
    assert decoded.root_positions == {1, 2}


def test_a_selection_with_more_origins_than_a_record_holds_keeps_its_roots() -> None:
    count = 140_000
    batch = SpanBatch(
        [bytes([n % 251 + 1]) * 16 for n in range(count)],
        [b"span-%d" % n for n in range(count)],
        [Origin(b"resource-%d" % n, b"scope") for n in range(count)],
    )
    picks = list(range(1, count, 2))  # 70,000 spans: two records
    roots = [0, 65_534, 65_535, 69_999]
    decoded = decode_span_batches(
        encode_selected(batch, picks, roots), OriginInterner(limit=1 << 20)
    )
    assert decoded.spans == [b"span-%d" % n for n in picks]
    assert [o.resource_fields for o in decoded.origins] == [b"resource-%d" % n for n in picks]
    assert decoded.root_positions == set(roots)


def test_the_record_layout_is_the_documented_one() -> None:
    """Members of different versions forward to each other during a rolling upgrade: the layout
    in batch_codec's docstring is a wire contract, checked here byte by byte."""
    first, second = Origin(b"res-a", b"scope-a"), Origin(b"res-b", b"")
    ids = [b"\x01" * 16, b"\x02" * 16, b"\x01" * 16]
    batch = SpanBatch(ids, [b"span-0", b"s1", b"span-two"], [first, second, first])
    batch.root_positions = {1}
    origin_table = (struct.pack("<I", 5) + b"res-a" + struct.pack("<I", 7) + b"scope-a") + (
        struct.pack("<I", 5) + b"res-b" + struct.pack("<I", 0)
    )
    body = (
        struct.pack("<III", 3, 2, 1)  # spans, origins, roots
        + origin_table
        + b"".join(ids)
        + struct.pack("<3H", 0, 1, 0)  # each span's origin
        + struct.pack("<I", 1)  # the roots
        + struct.pack("<3I", 6, 2, 8)  # each span's length
        + b"span-0s1span-two"
    )
    expected = b"RPB1" + struct.pack("<I", len(body)) + body
    assert encode_span_batch(batch) == expected
    assert encode_selected(batch, [0, 1, 2], [1]) == expected
