"""Pre-built OTLP payload sets for the load generator, generated once and cached on disk.

A set is the serialized ExportTraceServiceRequests of `bench/traffic.py` for one seed, plus what
the benchmark needs to know about them without parsing during the run:

- the byte offset of every span's `trace_id`, so a sender can replay the set many times with
  fresh trace IDs: replay number `epoch` writes `epoch` into bytes 12..15 of every trace ID
  (bytes 0..11 stay random, so IDs stay unique within a set, across sets and across replays) —
  a tail sampler would otherwise treat a replayed trace as late spans of a decided one;
- which request carries each trace's root span, for decision latency (root acknowledged at the
  sender → root received at the sink);
- which traces every policy under test must keep (errors and flagged transactions), so lost
  traces are noticed.

Generation runs at ~11 k spans/s, so sets are cached under bench/results/payloads/, keyed by the
traffic shape, the seed and the source of bench/traffic.py.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from bench import traffic
from bench.traffic import TrafficShape, generate_requests

CACHE = Path(__file__).resolve().parent / "results" / "payloads"
_FORMAT = 1


@dataclass
class PayloadSet:
    """One seed's requests and their index."""

    bodies: list[bytes]
    span_counts: list[int]
    trace_id_offsets: list[list[int]]
    """Per request, the offset of each span's 16 trace-ID bytes in the body."""
    roots: list[list[bytes]]
    """Per request, the first 12 trace-ID bytes of each root span it carries."""
    must_keep: set[bytes] = field(default_factory=set)
    """First 12 trace-ID bytes of traces with an error span or `app.flagged = true`."""

    @property
    def spans(self) -> int:
        return sum(self.span_counts)

    @property
    def wire_bytes(self) -> int:
        return sum(map(len, self.bodies))


def epoch_trace_id(prefix: bytes, epoch: int) -> bytes:
    """The trace ID a span with this 12-byte prefix carries in replay number `epoch`."""
    return prefix + epoch.to_bytes(4, "big")


def cut_at_epochs(body: bytes, offsets: list[int]) -> list[bytes]:
    """`body` without bytes 12..15 of each trace ID: `epoch_tag.join(pieces)` rebuilds it.

    One `bytes.join` per request (~50 µs for 512 spans with the allocator tuned, see
    bench/allocator.py) is cheaper than patching in place, and thread-safe.
    """
    pieces, start = [], 0
    for offset in offsets:
        pieces.append(body[start : offset + 12])
        start = offset + 16
    pieces.append(body[start:])
    return pieces


def epoch_tag(epoch: int) -> bytes:
    return epoch.to_bytes(4, "big")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes, start: int, end: int, wanted: int) -> list[tuple[int, int]]:
    """(start, end) of each length-delimited field number `wanted` in data[start:end]."""
    found = []
    pos = start
    while pos < end:
        key, pos = _varint(data, pos)
        wire_type = key & 7
        if wire_type == 2:
            length, pos = _varint(data, pos)
            if key >> 3 == wanted:
                found.append((pos, pos + length))
            pos += length
        elif wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    return found


def trace_id_offsets(body: bytes) -> list[int]:
    """Offsets of the 16 trace-ID bytes of every span, in wire order.

    ExportTraceServiceRequest.resource_spans(1) → ResourceSpans.scope_spans(2) →
    ScopeSpans.spans(2) → Span.trace_id(1), which serializers write first in a span.
    """
    offsets = []
    for rs_start, rs_end in _fields(body, 0, len(body), 1):
        for ss_start, ss_end in _fields(body, rs_start, rs_end, 2):
            for span_start, _ in _fields(body, ss_start, ss_end, 2):
                if body[span_start : span_start + 2] != b"\x0a\x10":
                    raise ValueError("span does not start with a 16-byte trace_id")
                offsets.append(span_start + 2)
    return offsets


def route_of(trace_id: bytes, routes: int) -> int:
    """The backend a trace-ID-routing front sends this trace to, one of `routes`.

    It reads the first 12 bytes only, which replays leave alone, so a trace keeps its backend
    from one replay to the next, as a front hashing the whole ID would keep it within one.
    """
    return int.from_bytes(trace_id[:12], "big") % routes


def split_by_route(body: bytes, routes: int) -> list[bytes]:
    """`body` as a trace-ID-routing front (the Collector's load_balancing exporter) forwards it:
    one request per backend, each with its traces' spans under their own resource and scope.
    A backend none of whose traces are in `body` gets an empty request (b"")."""
    request = ExportTraceServiceRequest.FromString(body)
    parts = [ExportTraceServiceRequest() for _ in range(routes)]
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            groups: dict[int, list[Span]] = {}
            for span in scope_spans.spans:
                groups.setdefault(route_of(span.trace_id, routes), []).append(span)
            for route, spans in groups.items():
                out = parts[route].resource_spans.add()
                out.resource.CopyFrom(resource_spans.resource)
                out.schema_url = resource_spans.schema_url
                scope = out.scope_spans.add()
                scope.scope.CopyFrom(scope_spans.scope)
                scope.schema_url = scope_spans.schema_url
                scope.spans.extend(spans)
    return [part.SerializeToString() if part.resource_spans else b"" for part in parts]


def index(bodies: list[bytes]) -> PayloadSet:
    """Analyse serialized requests: span counts, trace-ID offsets, roots, must-keep traces."""
    payloads = PayloadSet(bodies=bodies, span_counts=[], trace_id_offsets=[], roots=[])
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        offsets = trace_id_offsets(body)
        roots = []
        count = 0
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    count += 1
                    prefix = span.trace_id[:12]
                    if not span.parent_span_id:
                        roots.append(prefix)
                    if span.status.code == 2 or any(
                        kv.key == "app.flagged" and kv.value.bool_value for kv in span.attributes
                    ):
                        payloads.must_keep.add(prefix)
        if count != len(offsets):
            raise ValueError(f"found {len(offsets)} trace IDs for {count} spans")
        payloads.span_counts.append(count)
        payloads.trace_id_offsets.append(offsets)
        payloads.roots.append(roots)
    return payloads


def cache_path(traces: int, seed: int, shape: TrafficShape | None = None) -> Path:
    shape = shape or TrafficShape(seed=seed)
    key = hashlib.sha256(
        repr((_FORMAT, traces, shape)).encode() + Path(traffic.__file__).read_bytes()
    ).hexdigest()[:16]
    return CACHE / f"traces{traces}-seed{seed}-{key}.pickle"


def load(traces: int, seed: int) -> PayloadSet:
    """The payload set for `traces` traces of seed `seed`, from the cache or generated now."""
    path = cache_path(traces, seed)
    if path.exists():
        with path.open("rb") as file:
            cached: PayloadSet = pickle.load(file)
            return cached
    payloads = index(list(generate_requests(traces, TrafficShape(seed=seed))))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    with partial.open("wb") as file:
        pickle.dump(payloads, file, protocol=pickle.HIGHEST_PROTOCOL)
    partial.replace(path)
    return payloads
