"""Seeded mutations of OTLP and peer-door request bodies, for the fault tests' fuzzer.

`cases(door, count, seed)` returns `count` requests for one door — `"grpc"`, `"http"` (OTLP/HTTP,
protobuf and JSON, plain or compressed, right and wrong headers) or `"peer"` (a cluster member's
peer door) — each made from a valid seed by one family of mutation, named in `Case.family` so a
run can report what it sent. The same seed gives the same cases, byte for byte.

The families: byte-level damage (bit flips, interesting bytes, truncation, insertion, deletion,
duplication, splices of two bodies), protobuf-aware damage (a length varint made shorter,
longer, huge, overlong or ten bytes of 0xff; unknown groups nested thousands deep; attribute
values nested around protobuf's limit), JSON-aware damage (values swapped for other types, odd
numbers, lone surrogates, NUL, BOM, invalid UTF-8, nesting far past any limit, documents that
are not objects, rates that are not finite), compression damage (corrupt, truncated, trailing
garbage, concatenated members, bombs that inflate past the request limit, codings no one
speaks) and peer-record damage (header counts overwritten with values no body could hold,
handoff metadata of the wrong shape).

Seeds are bytes this module did not write itself where it can help it: `varied_requests` built
by upb, the same re-encoded in the OpenTelemetry Collector's field order.
"""

from __future__ import annotations

import gzip
import json
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from refinery_py.cluster.handoff_codec import encode_handoff
from refinery_py.model import Decision, HandedOffDecision, HandedOffTrace, Handoff, SendReason
from refinery_py.otlp.batch_codec import encode_span_batch
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.otlp.json import request_to_json
from tests.otlp_nesting import in_span_attribute, nested
from tests.otlp_reorder import reorder_request
from tests.otlp_traffic import varied_requests

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass(frozen=True)
class Case:
    """One request: where it goes, how it is labelled, and the mutation family that made it."""

    door: str
    family: str
    body: bytes
    path: str = "/v1/traces"
    method: str = "POST"
    content_type: str | None = PROTOBUF
    content_encoding: str | None = None
    grpc_gzip: bool = False


_INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x08)
_INTERESTING_U32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x00FFFFFF, 65535, 65536)
_HUGE_VARINTS = (
    b"\xff\xff\xff\xff\x0f",  # 2^32 - 1
    b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f",  # 2^63 - 1
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # 2^64 - 1
    b"\xff" * 10,  # runs past ten bytes
    b"\x80\x80\x80\x80\x00",  # 0, overlong
)


class Seeds:
    """Valid bodies for every door, built once per seed."""

    def __init__(self, seed: int) -> None:
        upb = varied_requests(seed, traces=12, per_request=8)
        collector = [reorder_request(body, "descending") for body in upb]
        self.protobuf = upb + collector
        self.json = [request_to_json(body) for body in upb]
        interner = OriginInterner()
        batches = [split_request(body, interner) for body in upb]
        self.span_records = [encode_span_batch(batch) for batch in batches if batch.spans]
        self.handoffs = [encode_handoff(_handoff_of(batch)) for batch in batches if batch.spans]


def _handoff_of(batch: Any) -> Handoff:
    """The batch's traces as a handoff, with a remembered decision for one of them."""
    handoff = Handoff()
    by_trace: dict[bytes, list[int]] = {}
    for index, trace_id in enumerate(batch.trace_ids):
        by_trace.setdefault(trace_id, []).append(index)
    for trace_id, indexes in by_trace.items():
        roots = [n for n, i in enumerate(indexes) if i in batch.root_positions]
        handoff.traces.append(
            HandedOffTrace(
                trace_id,
                [batch.spans[i] for i in indexes],
                [batch.origins[i] for i in indexes],
                roots[0] if roots else -1,
                1.5,
                0.5 if roots else None,
            )
        )
    decision = Decision(True, 4, "rules/trace/fuzz", "key", "t:s")
    handoff.decisions.append(
        HandedOffDecision(bytes(range(16)), decision, SendReason.GOT_ROOT, 3.0)
    )
    return handoff


# ---- byte-level damage ------------------------------------------------------------------------


def damage(rng: random.Random, body: bytes, other: bytes) -> tuple[str, bytes]:
    """One to four byte-level edits, named after the first."""
    data = bytearray(body)
    name = ""
    for _ in range(rng.randint(1, 4)):
        if not data:
            data = bytearray(b"\x0a")
        op = rng.randrange(8)
        at = rng.randrange(len(data))
        if op == 0:
            data[at] ^= 1 << rng.randrange(8)
            edit = "bit flip"
        elif op == 1:
            data[at] = rng.choice(_INTERESTING_BYTES)
            edit = "interesting byte"
        elif op == 2:
            del data[at:]
            edit = "truncation"
        elif op == 3:
            data[at:at] = rng.randbytes(rng.randint(1, 16))
            edit = "insertion"
        elif op == 4:
            del data[at : at + rng.randint(1, 32)]
            edit = "deletion"
        elif op == 5:
            start = rng.randrange(len(data))
            data[at:at] = data[start : start + rng.randint(1, 64)]
            edit = "duplication"
        elif op == 6:
            cut = rng.randrange(len(other) + 1)
            data[at:] = other[cut:]
            edit = "splice"
        else:
            data[at : at + 4] = struct.pack("<I", rng.choice(_INTERESTING_U32))
            edit = "u32 overwrite"
        name = name or edit
    return name, bytes(data)


# ---- protobuf-aware damage --------------------------------------------------------------------


def _length_fields(
    body: bytes, start: int = 0, end: int | None = None, depth: int = 0
) -> list[int]:
    """Offsets of the length varints of every LEN field that parses as a message, recursively
    (best effort: a LEN field that does not parse as fields is a leaf)."""
    end = len(body) if end is None else end
    found: list[int] = []
    pos = start
    while pos < end:
        key, after = _varint(body, pos, end)
        if key is None:
            return found
        wire_type = key & 7
        if wire_type == 0:
            value, pos = _varint(body, after, end)
            if value is None:
                return found
        elif wire_type == 1:
            pos = after + 8
        elif wire_type == 5:
            pos = after + 4
        elif wire_type == 2:
            length, value_start = _varint(body, after, end)
            if length is None or value_start + length > end:
                return found
            found.append(after)
            if depth < 12:
                found += _length_fields(body, value_start, value_start + length, depth + 1)
            pos = value_start + length
        else:
            return found
    return found


def _varint(body: bytes, pos: int, end: int) -> tuple[int | None, int]:
    value = shift = 0
    while pos < end and shift < 64:
        byte = body[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return None, pos


def corrupt_length(rng: random.Random, body: bytes) -> tuple[str, bytes]:
    """A length varint of some LEN field replaced: off by one, zero, huge or overlong."""
    offsets = _length_fields(body)
    if not offsets:
        return "length varint", body
    at = rng.choice(offsets)
    length, after = _varint(body, at, len(body))
    assert length is not None
    choice = rng.randrange(4)
    if choice == 0:
        new = _encode_varint(length + rng.choice((-1, 1)) if length else 1)
        name = "length off by one"
    elif choice == 1:
        new = b"\x00"
        name = "length zero"
    elif choice == 2:
        new = rng.choice(_HUGE_VARINTS)
        name = "length huge"
    else:
        new = _encode_varint(length)[:-1] + bytes([_encode_varint(length)[-1] | 0x80, 0x00])
        name = "length overlong"
    return name, body[:at] + new + body[after:]


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def deep_nesting(rng: random.Random) -> tuple[str, bytes]:
    """Messages nested around and far past protobuf's depth limit."""
    choice = rng.randrange(3)
    if choice == 0:
        levels = rng.choice((45, 46, 47, 48, 49, 60, 200))
        _, encoded = in_span_attribute(*nested(levels, "array"))
        return "nested arrays", encoded
    if choice == 1:
        levels = rng.choice((30, 31, 32, 33, 40, 150))
        _, encoded = in_span_attribute(*nested(levels, "kvlist"))
        return "nested maps", encoded
    depth = rng.choice((64, 101, 1000, 20000))
    # Field 15 (unknown) as nested groups: a parser skipping unknown fields must recurse.
    return "nested unknown groups", b"\x7b" * depth + b"\x7c" * depth


# ---- JSON-aware damage ------------------------------------------------------------------------

_ODD_STRINGS = (
    "\ud800",
    "\udfff",
    "\x00",
    "\ufeff",
    "\u202e",
    "𝄞",
    "\uffff",
    "ZZ",
    "00" * 16,
    "0" * 32,
    "ff" * 8,
    "==",
    "x" * 5000,
)
_ODD_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    2**63,
    2**64 - 1,
    -(2**63),
    1.5,
    -0.0,
    1e308,
    "",
    "NaN",
    "Infinity",
    "-Infinity",
    "-1",
    "1e5",
    "1e999",
    "0x10",
    " 1",
    "１",
    [],
    {},
    [1, 2],
    {"a": 1},
)
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "kind", "status", "attributes")
_RATE_VALUES: tuple[Any, ...] = (
    {"doubleValue": "Infinity"},
    {"doubleValue": "-Infinity"},
    {"doubleValue": "NaN"},
    {"doubleValue": 1e300},
    {"stringValue": "inf"},
    {"stringValue": "1e999"},
    {"stringValue": "-5"},
    {"intValue": "9223372036854775807"},
    {"intValue": "-9223372036854775808"},
    {"boolValue": True},
    {"arrayValue": {"values": [{"intValue": 5}]}},
)


def _odd(rng: random.Random) -> Any:
    return rng.choice(_ODD_STRINGS) if rng.random() < 0.3 else rng.choice(_ODD_VALUES)


def _spans_of(document: Any) -> list[dict[str, Any]]:
    spans = []
    for rs in document.get("resourceSpans", []) if isinstance(document, dict) else []:
        for ss in rs.get("scopeSpans", []):
            spans.extend(ss.get("spans", []))
    return spans


def json_mutation(rng: random.Random, body: bytes) -> tuple[str, bytes]:
    """A structural edit of an OTLP JSON document, encoded with or without escapes."""
    document = json.loads(body)
    choice = rng.randrange(7)
    if choice == 0:
        name = "wrong type"
        for _ in range(rng.randint(1, 3)):
            _replace_somewhere(rng, document, lambda: _odd(rng))
    elif choice == 1:
        name = "odd id or enum"
        spans = _spans_of(document)
        if spans:
            rng.choice(spans)[rng.choice(_ID_KEYS)] = _odd(rng)
    elif choice == 2:
        name = "rate not finite"
        spans = _spans_of(document)
        if spans:
            key = rng.choice(("SampleRate", "sampleRate"))
            target = rng.choice(spans)
            target.setdefault("attributes", []).append(
                {"key": key, "value": rng.choice(_RATE_VALUES)}
            )
            if rng.random() < 0.5:
                target["traceState"] = rng.choice(("ot=th:0", "ot=th:zz", "ot=th:" + "f" * 20))
    elif choice == 3:
        name = "not an object"
        document = rng.choice(([document], "resourceSpans", 5, None, [], {"resourceSpans": {}}))
    elif choice == 4:
        name = "nested arrays" if rng.random() < 0.5 else "nested maps"
        levels = rng.choice((30, 47, 48, 60, 120))
        value, _ = nested(levels, "array" if name == "nested arrays" else "kvlist")
        spans = _spans_of(document)
        if spans:
            rng.choice(spans).setdefault("attributes", []).append({"key": "d", "value": value})
    elif choice == 5:
        name = "unknown and repeated keys"
        spans = _spans_of(document)
        if spans:
            span = rng.choice(spans)
            span["unknownField"] = _odd(rng)
            span["trace_id"] = span.get("traceId", "")
    else:
        raw = rng.choice(
            (
                b"[" * 100_000,
                b'{"resourceSpans":' * 5000,
                b"\xef\xbb\xbf" + body,
                body.replace(b'"', b"\xff\xfe", 1),
                body[: len(body) // 2],
                body + b"}",
                b'{"resourceSpans": [], "resourceSpans": [{}]}',
                b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "\\ud800"}]}]}]}',
                b"1e999999",
                b"",
            )
        )
        return "raw json", raw
    text = json.dumps(document, ensure_ascii=rng.random() < 0.5)
    return name, text.encode("utf-8", "surrogatepass")


def _replace_somewhere(rng: random.Random, node: Any, value: Callable[[], Any]) -> None:
    """Walk down at random and replace one value (or key's value) with `value()`."""
    while True:
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
            if rng.random() < 0.3 or not isinstance(node[key], dict | list) or not node[key]:
                node[key] = value()
                return
            node = node[key]
        elif isinstance(node, list) and node:
            index = rng.randrange(len(node))
            if rng.random() < 0.3 or not isinstance(node[index], dict | list) or not node[index]:
                node[index] = value()
                return
            node = node[index]
        else:
            return


# ---- compression damage -----------------------------------------------------------------------


def compressed(rng: random.Random, body: bytes, limit: int) -> tuple[str, str, bytes]:
    """(family, Content-Encoding, body): compressed bodies, valid and not."""
    packed = gzip.compress(body, mtime=0)
    choice = rng.randrange(11)
    if choice == 0:
        return "gzip valid", "gzip", packed
    if choice == 1:
        data = bytearray(packed)
        at = rng.randrange(10, len(data)) if len(data) > 10 else 0
        data[at] ^= 1 << rng.randrange(8)
        return "gzip corrupt", "gzip", bytes(data)
    if choice == 2:
        return "gzip truncated", "gzip", packed[: rng.randrange(len(packed))]
    if choice == 3:
        return "gzip trailing garbage", "gzip", packed + rng.randbytes(rng.randint(1, 40))
    if choice == 4:
        return (
            "gzip members",
            "gzip",
            gzip.compress(body[:10], mtime=0) + gzip.compress(body[10:], mtime=0),
        )
    if choice == 5:
        # Inflates to just past the request limit: refused, and never held whole.
        bomb = gzip.compress(bytes(limit + rng.randint(1, 4096)), compresslevel=9, mtime=0)
        return "gzip bomb", "gzip", bomb
    if choice == 6:
        return "deflate zlib", "deflate", zlib.compress(body)
    if choice == 7:
        raw = zlib.compressobj(wbits=-15)
        return "deflate raw", "deflate", raw.compress(body) + raw.flush()
    if choice == 8:
        return "deflate bomb", "deflate", zlib.compress(bytes(limit * 2), 9)
    if choice == 9:
        return "deflate corrupt", "deflate", zlib.compress(body)[:-3] + b"\x00\x00\x00"
    coding = rng.choice(("br", "zstd", "gzip, gzip", "GZIP", "identity", "x-gzip", "compress"))
    return "unusual coding", coding, packed if "gzip" in coding.lower() else body


# ---- the cases of each door -------------------------------------------------------------------


def cases(door: str, count: int, seed: int, *, limit: int) -> list[Case]:
    """`count` requests for `door`; `limit` is the node's request size limit (for bombs)."""
    rng = random.Random(f"{door}:{seed}")
    seeds = Seeds(seed)
    make = {"grpc": _grpc_case, "http": _http_case, "peer": _peer_case}[door]
    return [make(rng, seeds, limit) for _ in range(count)]


def _protobuf_case(rng: random.Random, seeds: Seeds) -> tuple[str, bytes]:
    body = rng.choice(seeds.protobuf)
    choice = rng.random()
    if choice < 0.55:
        return damage(rng, body, rng.choice(seeds.protobuf))
    if choice < 0.85:
        return corrupt_length(rng, body)
    if choice < 0.95:
        return deep_nesting(rng)
    return "valid", body


def _grpc_case(rng: random.Random, seeds: Seeds, limit: int) -> Case:
    choice = rng.random()
    if choice < 0.05:
        # Past the limit, as sent or only once inflated by gRPC itself.
        return Case("grpc", "over the limit", bytes(limit + 1), grpc_gzip=rng.random() < 0.5)
    family, body = _protobuf_case(rng, seeds)
    return Case("grpc", family, body, grpc_gzip=rng.random() < 0.2)


def _http_case(rng: random.Random, seeds: Seeds, limit: int) -> Case:
    choice = rng.random()
    if choice < 0.45:
        family, body = _protobuf_case(rng, seeds)
        return Case("http", family, body)
    if choice < 0.75:
        source = rng.choice(seeds.json)
        if rng.random() < 0.4:
            family, body = damage(rng, source, rng.choice(seeds.json))
        else:
            family, body = json_mutation(rng, source)
        return Case("http", "json " + family, body, content_type=JSON)
    if choice < 0.92:
        use_json = rng.random() < 0.3
        body = rng.choice(seeds.json if use_json else seeds.protobuf)
        if rng.random() < 0.3:
            _, body = damage(rng, body, body)
        family, coding, packed = compressed(rng, body, limit)
        content_type = JSON if use_json else PROTOBUF
        return Case("http", family, packed, content_type=content_type, content_encoding=coding)
    body = rng.choice(seeds.protobuf)
    content_type = rng.choice(
        (
            None,
            "text/plain",
            "application/json",
            "application/x-protobuf; charset=utf-8",
            "application/protobuf",
            "multipart/form-data; boundary=x",
            "application/x-protobuf, application/json",
            "\u00e9/\u00e8",
        )
    )
    path = rng.choice(("/v1/traces", "/v1/traces", "/v1/logs", "/v1/traces/", "//v1/traces"))
    method = rng.choice(("POST", "POST", "PUT", "GET"))
    return Case("http", "wrong headers", body, path, method, content_type=content_type)


def _peer_case(rng: random.Random, seeds: Seeds, limit: int) -> Case:
    choice = rng.random()
    if choice < 0.45:
        record = rng.choice(seeds.span_records)
        if rng.random() < 0.3:
            family, body = _peer_header(rng, record, offsets=(8, 12, 16))
        else:
            family, body = damage(rng, record, rng.choice(seeds.span_records))
        if rng.random() < 0.05:
            family, body = "valid", record
        return Case("peer", "spans " + family, body, "/peer/v1/spans", content_type=None)
    if choice < 0.75:
        record = rng.choice(seeds.handoffs)
        draw = rng.random()
        if draw < 0.3:
            family, body = _peer_header(rng, record, offsets=(4, 8))
        elif draw < 0.5:
            family, body = _handoff_metadata(rng, record)
        else:
            family, body = damage(rng, record, rng.choice(seeds.handoffs))
        return Case("peer", "handoff " + family, body, "/peer/v1/handoff", content_type=None)
    if choice < 0.85:
        record = rng.choice(seeds.span_records)
        family, coding, packed = compressed(rng, record, limit)
        return Case(
            "peer",
            "spans " + family,
            packed,
            "/peer/v1/spans",
            content_encoding=coding,
            content_type=None,
        )
    if choice < 0.95:
        document: Any = {"node": "127.0.0.1:1", "event": "join"}
        _replace_somewhere(rng, document, lambda: _odd(rng))
        body = json.dumps(document).encode("utf-8", "surrogatepass")
        if rng.random() < 0.3:
            _, body = damage(rng, body, body)
        return Case("peer", "membership", body, "/peer/v1/membership", content_type=JSON)
    path = rng.choice(
        (
            "/peer/v1/node",
            "/peer/v1/traces/" + rng.randbytes(16).hex(),
            "/peer/v1/traces/zz",
            "/peer/v1/traces/%00%ff",
            "/peer/v1/traces/" + "a" * 4000,
            "/peer/v1/traces/%F0%9D%84%9E",
        )
    )
    return Case("peer", "lookups", b"", path, "GET", content_type=None)


def _peer_header(rng: random.Random, record: bytes, offsets: tuple[int, ...]) -> tuple[str, bytes]:
    """A count or length in the record header overwritten with a value no body could hold."""
    at = rng.choice(offsets)
    value = rng.choice(_INTERESTING_U32)
    return "header count", record[:at] + struct.pack("<I", value) + record[at + 4 :]


def _handoff_metadata(rng: random.Random, record: bytes) -> tuple[str, bytes]:
    """The handoff's JSON metadata replaced by a document of the wrong shape."""
    (meta_length,) = struct.unpack_from("<I", record, 8)
    meta = json.loads(record[12 : 12 + meta_length])
    _replace_somewhere(rng, meta, lambda: _odd(rng))
    if rng.random() < 0.3:
        meta = rng.choice(([], 5, None, {"traces": 5}, {"decisions": {"a": 1}}))
    new = json.dumps(meta).encode("utf-8", "surrogatepass")
    rest = record[12 + meta_length :]
    body = struct.pack("<I", len(new)) + new + rest
    return "metadata", record[:4] + struct.pack("<I", len(body)) + body
