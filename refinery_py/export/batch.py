"""Turning a batch of kept traces into export requests, by concatenation or by splitting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from refinery_py.model import EncodedSpans
from refinery_py.otlp.frame import split_payload
from refinery_py.otlp.wire import LEN, iter_fields


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """One serialized ExportTraceServiceRequest and how many spans it carries.

    `traces` are the traces joined into it when there are several (each is a payload of its
    own), so that a request the backend refuses can be sent again in halves; it is empty for a
    request of one trace or of a piece of one.
    """

    payload: bytes
    span_count: int
    traces: tuple[EncodedSpans, ...] = ()

    @property
    def splittable(self) -> bool:
        return len(self.traces) > 1

    def halves(self) -> tuple[ExportRequest, ExportRequest]:
        """The request's traces in two requests, the first half and the rest."""
        middle = len(self.traces) // 2
        return _joined(self.traces[:middle]), _joined(self.traces[middle:])


def build_requests(traces: Sequence[EncodedSpans], max_bytes: int) -> list[ExportRequest]:
    """The requests that carry `traces`.

    Normally one request: each payload is a serialized request and repeated fields concatenate,
    so joining the bytes is the whole encoding. Only a lone trace larger than `max_bytes` is
    split (by `split_payload`, along span boundaries) into several requests.
    """
    if len(traces) == 1 and len(traces[0].payload) > max_bytes:
        return [
            ExportRequest(chunk, count_spans(chunk))
            for chunk in split_payload(traces[0].payload, max_bytes)
        ]
    return [_joined(traces)]


def _joined(traces: Sequence[EncodedSpans]) -> ExportRequest:
    payload = b"".join(trace.payload for trace in traces)
    span_count = sum(trace.span_count for trace in traces)
    return ExportRequest(payload, span_count, tuple(traces) if len(traces) > 1 else ())


def count_spans(payload: bytes) -> int:
    """Spans in a serialized ExportTraceServiceRequest (resource_spans → scope_spans → spans)."""
    count = 0
    for field, wire_type, _, rs_start, rs_end in iter_fields(payload, 0, len(payload)):
        if field != 1 or wire_type != LEN:
            continue
        for f, wt, _, ss_start, ss_end in iter_fields(payload, rs_start, rs_end):
            if f != 2 or wt != LEN:
                continue
            count += sum(
                1
                for span_field, span_wt, *_ in iter_fields(payload, ss_start, ss_end)
                if span_field == 2 and span_wt == LEN
            )
    return count
