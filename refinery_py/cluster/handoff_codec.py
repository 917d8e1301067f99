"""The wire form of a `Handoff`: buffered traces and remembered decisions for their new owner.

Handoffs happen when the member list changes, so they favour simplicity over the last byte:

    record    := MAGIC u32:body_length body
    body      := u32:meta_length meta u32:decisions id{decisions} u32:entry{decisions}
                 f32:age{decisions} span_batch
    meta      := JSON {"traces": [[age, root_age], ...], "decisions": [[keep, rate, reason,
                 key, sampler, send_reason], ...]}
    span_batch:= one `otlp.batch_codec` record holding every trace's spans, trace by trace

`traces` has one entry per trace, in the order the traces' spans appear (root_age -1: no root
yet); a decision refers to its entry in the `decisions` table, which holds each distinct
decision once. Every count and index is checked on the way in; a damaged body is refused.
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any

import orjson

from refinery_py.model import (
    Decision,
    HandedOffDecision,
    HandedOffTrace,
    Handoff,
    SendReason,
    SpanBatch,
)
from refinery_py.otlp.batch_codec import decode_span_batches, encode_span_batch
from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.ingest import OriginInterner

MAGIC = b"RPH1"
_HEADER = struct.Struct("<4sI")
_U32 = struct.Struct("<I")
_SEND_REASONS = {reason.value: reason for reason in SendReason}


def is_handoff(body: bytes) -> bool:
    return body.startswith(MAGIC)


def encode_handoff(handoff: Handoff) -> bytes:
    """One record holding every trace and decision of `handoff`."""
    batch = SpanBatch()
    ages: list[list[float]] = []
    for trace in handoff.traces:
        if not trace.spans:
            continue
        first = len(batch.spans)
        batch.trace_ids.extend([trace.trace_id] * len(trace.spans))
        batch.spans.extend(trace.spans)
        batch.origins.extend(trace.origins)
        if trace.root_index >= 0:
            batch.root_positions.add(first + trace.root_index)
        ages.append([trace.age, -1.0 if trace.root_age is None else trace.root_age])
    table: dict[tuple[Decision, SendReason], int] = {}
    entries = array("I")
    decision_ages = array("f")
    for handed in handoff.decisions:
        key = (handed.decision, handed.send_reason)
        index = table.get(key)
        if index is None:
            index = table[key] = len(table)
        entries.append(index)
        decision_ages.append(handed.age)
    meta = orjson.dumps(
        {
            "traces": ages,
            "decisions": [
                [d.keep, d.rate, d.reason, d.key, d.sampler, reason.value] for d, reason in table
            ],
        }
    )
    body = b"".join(
        (
            _U32.pack(len(meta)),
            meta,
            _U32.pack(len(handoff.decisions)),
            b"".join(handed.trace_id for handed in handoff.decisions),
            entries.tobytes(),
            decision_ages.tobytes(),
            encode_span_batch(batch),
        )
    )
    return _HEADER.pack(MAGIC, len(body)) + body


def decode_handoffs(body: bytes, origins: OriginInterner) -> Handoff:
    """Every record in `body` as one Handoff; raises MalformedPayload if anything is off."""
    handoff = Handoff()
    pos = 0
    try:
        while pos < len(body):
            magic, length = _HEADER.unpack_from(body, pos)
            if magic != MAGIC:
                raise MalformedPayload("not a handoff record (bad magic)")
            start = pos + _HEADER.size
            end = start + length
            if end > len(body):
                raise MalformedPayload("handoff record runs past the end of the body")
            _decode_record(body[start:end], origins, handoff)
            pos = end
    except struct.error:
        raise MalformedPayload("truncated handoff record") from None
    return handoff


def _decode_record(body: bytes, origins: OriginInterner, handoff: Handoff) -> None:
    (meta_length,) = _U32.unpack_from(body, 0)
    pos = 4 + meta_length
    try:
        meta = orjson.loads(body[4:pos])
    except orjson.JSONDecodeError:
        raise MalformedPayload("handoff metadata is not valid JSON") from None
    ages, table = _read_meta(meta)
    (count,) = _U32.unpack_from(body, pos)
    pos += 4
    if 24 * count > len(body) - pos:  # trace ID, entry and age: checked before allocating
        raise MalformedPayload("handoff decisions are truncated")
    ids_end = pos + 16 * count
    trace_ids = [body[i : i + 16] for i in range(pos, ids_end, 16)]
    entries = array("I")
    entries.frombytes(body[ids_end : ids_end + 4 * count])
    decision_ages = array("f")
    decision_ages.frombytes(body[ids_end + 4 * count : ids_end + 8 * count])
    if len(trace_ids) != count or len(entries) != count or len(decision_ages) != count:
        raise MalformedPayload("handoff decisions are truncated")
    if count and max(entries) >= len(table):
        raise MalformedPayload("handoff decision refers to a missing table entry")
    for trace_id, entry, age in zip(trace_ids, entries, decision_ages, strict=True):
        decision, reason = table[entry]
        handoff.decisions.append(HandedOffDecision(trace_id, decision, reason, _age(age)))
    spans = decode_span_batches(body[ids_end + 8 * count :], origins)
    _group_traces(spans, ages, handoff)


def _read_meta(meta: Any) -> tuple[list[tuple[float, float]], list[tuple[Decision, SendReason]]]:
    if not isinstance(meta, dict):
        raise MalformedPayload("handoff metadata must be an object")
    traces, decisions = meta.get("traces", []), meta.get("decisions", [])
    if not isinstance(traces, list) or not isinstance(decisions, list):
        raise MalformedPayload("handoff traces and decisions must be lists")
    ages: list[tuple[float, float]] = []
    for item in traces:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(v, int | float) for v in item)
        ):
            raise MalformedPayload("handoff trace ages must be [age, root_age] pairs")
        ages.append((float(item[0]), float(item[1])))
    table: list[tuple[Decision, SendReason]] = []
    for item in decisions:
        if not isinstance(item, list) or len(item) != 6:
            raise MalformedPayload("a handoff decision must have six fields")
        keep, rate, reason, key, sampler, send_reason = item
        if (
            not isinstance(keep, bool)
            or not isinstance(rate, int)
            or not all(isinstance(v, str) for v in (reason, key, sampler))
            or not isinstance(send_reason, str)
            or send_reason not in _SEND_REASONS
        ):
            raise MalformedPayload("a handoff decision has a field of the wrong type")
        table.append((Decision(keep, rate, reason, key, sampler), _SEND_REASONS[send_reason]))
    return ages, table


def _group_traces(spans: SpanBatch, ages: list[tuple[float, float]], handoff: Handoff) -> None:
    """Cut the span batch into its traces (each trace's spans are contiguous)."""
    traces: list[HandedOffTrace] = []
    previous: bytes | None = None
    current: HandedOffTrace | None = None
    for index, trace_id in enumerate(spans.trace_ids):
        if current is None or trace_id != previous:
            if len(traces) == len(ages):
                raise MalformedPayload("handoff has more traces than trace ages")
            age, root_age = ages[len(traces)]
            current = HandedOffTrace(trace_id, [], [], -1, _age(age), _root_age(root_age))
            traces.append(current)
            previous = trace_id
        if index in spans.root_positions and current.root_index < 0:
            current.root_index = len(current.spans)
        current.spans.append(spans.spans[index])
        current.origins.append(spans.origins[index])
    if len(traces) != len(ages):
        raise MalformedPayload("handoff has fewer traces than trace ages")
    handoff.traces.extend(traces)


def _age(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 0.0


def _root_age(value: float) -> float | None:
    return None if value < 0 or not math.isfinite(value) else value
