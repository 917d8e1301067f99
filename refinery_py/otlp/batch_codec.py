"""A compact binary form of `SpanBatch` for forwarding spans between a node's worker processes.

Forwarded spans were validated at the front door; re-framing them as OTLP and splitting them
again at the owner would cost more than the rest of their journey. This form keeps what the
splitter produced — trace IDs, span bytes, origins, root positions — so the owner rebuilds the
batch with a few C-level slices per span. Records concatenate (exporters batch by joining
payloads), and every length is checked on the way in: a damaged body is refused, never guessed.

    record   := MAGIC u32:record_length body
    body     := u32:spans u32:origins u32:roots origin* trace_id{spans} u16:origin{spans}
                u32:root{roots} u32:length{spans} span_bytes
    origin   := u32:length resource_fields u32:length scope_fields
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left

from mypy_extensions import i64

from refinery_py.model import Origin, SpanBatch
from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.ingest import OriginInterner

MAGIC = b"RPB1"
_HEADER = struct.Struct("<4sIIII")
_LENGTH = struct.Struct("<I")
_MAX_ORIGINS = 65535
_PER_SPAN = 16 + 2 + 4
"""Fixed bytes a record holds per span: its trace ID, origin index and length."""


def is_span_batch(body: bytes) -> bool:
    return body.startswith(MAGIC)


def encode_span_batch(batch: SpanBatch) -> bytes:
    """`batch`'s spans as records (its rejected count stays where it was reported).

    One record, unless the spans have more distinct origins than a record's table holds (a
    request may carry that many resources or scopes): then one record per that many.
    """
    return encode_selected(batch, list(range(len(batch.spans))), sorted(batch.root_positions))


def encode_selected(batch: SpanBatch, picks: list[int], roots: list[int]) -> bytes:
    """The spans at positions `picks` of `batch`, in that order, as records; `roots` are the
    positions in `picks` (ascending) that hold root spans.

    A router encodes each destination's share straight from the request's batch this way, with
    no batch per destination in between.
    """
    all_origins = batch.origins
    index_of: dict[int, int] = {}
    origins: list[Origin] = []
    origin_indexes: list[int] = []
    last: Origin | None = None
    index = 0
    for position, pick in enumerate(picks):
        origin = all_origins[pick]
        # The spans of one resource and scope come together: most skip the lookup.
        if origin is not last:
            found = index_of.get(id(origin))
            if found is None:
                if len(origins) == _MAX_ORIGINS:
                    cut = bisect_left(roots, position)
                    return _record(
                        batch, picks[:position], origins, origin_indexes, roots[:cut]
                    ) + encode_selected(
                        batch, picks[position:], [r - position for r in roots[cut:]]
                    )
                found = index_of[id(origin)] = len(origins)
                origins.append(origin)
            index, last = found, origin
        origin_indexes.append(index)
    return _record(batch, picks, origins, origin_indexes, roots)


def _record(
    batch: SpanBatch,
    picks: list[int],
    origins: list[Origin],
    origin_indexes: list[int],
    roots: list[int],
) -> bytes:
    origin_table = b"".join(
        _LENGTH.pack(len(o.resource_fields))
        + o.resource_fields
        + _LENGTH.pack(len(o.scope_fields))
        + o.scope_fields
        for o in origins
    )
    all_spans = batch.spans
    all_ids = batch.trace_ids
    spans = [all_spans[pick] for pick in picks]
    lengths = array("I", [len(span) for span in spans])
    trace_ids = b"".join([all_ids[pick] for pick in picks])
    indexes = array("H", origin_indexes).tobytes()
    root_bytes = array("I", roots).tobytes()
    record_length = 12 + len(origin_table) + len(trace_ids) + len(indexes) + len(root_bytes)
    record_length += 4 * len(lengths) + sum(lengths)
    header = _HEADER.pack(MAGIC, record_length, len(spans), len(origins), len(roots))
    # One join, header included: each span's bytes are copied once.
    parts = [header, origin_table, trace_ids, indexes, root_bytes, lengths.tobytes()]
    parts.extend(spans)
    return b"".join(parts)


def decode_span_batches(body: bytes, origins: OriginInterner) -> SpanBatch:
    """Every record in `body` as one SpanBatch; raises MalformedPayload if a length is off."""
    batch = SpanBatch()
    pos = 0
    try:
        while pos < len(body):
            magic, record_length, count, origin_count, root_count = _HEADER.unpack_from(body, pos)
            if magic != MAGIC:
                raise MalformedPayload("not a span batch record (bad magic)")
            end = pos + 8 + record_length
            if end > len(body):
                raise MalformedPayload("span batch record runs past the end of the body")
            counts = (count, origin_count, root_count)
            _decode_record(body, pos + _HEADER.size, end, counts, interner=origins, batch=batch)
            pos = end
    except struct.error:
        raise MalformedPayload("truncated span batch record") from None
    return batch


def _decode_record(
    body: bytes,
    pos: int,
    end: int,
    counts: tuple[int, int, int],
    *,
    interner: OriginInterner,
    batch: SpanBatch,
) -> None:
    count, origin_count, root_count = counts
    # Every count is checked against the bytes left before it is used: a damaged header must
    # not make the decoder allocate (or loop) by what it claims.
    if 8 * origin_count + _PER_SPAN * count + 4 * root_count > end - pos:
        raise MalformedPayload("span batch record counts do not fit its length")
    table: list[Origin] = []
    for _ in range(origin_count):
        (length,) = _LENGTH.unpack_from(body, pos)
        resource = body[pos + 4 : pos + 4 + length]
        pos += 4 + length
        (length,) = _LENGTH.unpack_from(body, pos)
        scope = body[pos + 4 : pos + 4 + length]
        pos += 4 + length
        table.append(interner.get(resource, scope))
    if _PER_SPAN * count + 4 * root_count > end - pos:
        raise MalformedPayload("span batch record counts do not fit its length")
    ids_end = pos + 16 * count
    trace_ids = [body[i : i + 16] for i in range(pos, ids_end, 16)]
    indexes: tuple[int, ...] = struct.unpack_from(f"<{count}H", body, ids_end)
    pos = ids_end + 2 * count
    roots: tuple[int, ...] = struct.unpack_from(f"<{root_count}I", body, pos)
    pos += 4 * root_count
    lengths: tuple[int, ...] = struct.unpack_from(f"<{count}I", body, pos)
    pos += 4 * count
    if pos + sum(lengths) != end:
        raise MalformedPayload("span batch record lengths do not add up")
    if (count and max(indexes) >= origin_count) or any(r >= count for r in roots):
        raise MalformedPayload("span batch record refers to a missing origin or span")
    first = len(batch.spans)
    batch.trace_ids.extend(trace_ids)
    spans = batch.spans
    start: i64 = pos
    for length in lengths:
        stop: i64 = start + length
        spans.append(body[start:stop])
        start = stop
    batch.origins.extend([table[i] for i in indexes])
    batch.root_positions.update([first + r for r in roots])
