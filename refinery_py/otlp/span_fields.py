"""Every field the samplers read from a span, found in one walk of the span's top-level fields.

Rules people write test fields of every span of a trace (`error`, `http.route`, a flag), and a
sampler's key may read more. Searching a span's bytes once per field costs a pass over the span
per field (a substring search runs at about 0.4 ns a byte here, a kilobyte span at 0.4 µs per
field); one walk over its top-level fields, skipping each by its length, finds all of them at
once, and it is exact whatever order the writer put the fields in.

What the walk keeps: where each intrinsic field is (name, kind, times, IDs, the status code and
message, the number of events and links) and the decoded value of each attribute in the
`FieldPlan`, the attribute keys samplers have asked for. The plan is learned from their questions
and shared by every span the pipeline reads, so after the first trace every span is walked once.

Protobuf's rules apply: the last occurrence of a singular field wins, occurrences of the status
message merge, and of repeated attributes with one key the first wins (Refinery's rule).
"""

from __future__ import annotations

from typing import Final

from mypy_extensions import i64
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from refinery_py.model import FieldValue
from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.values import decode_any_value
from refinery_py.otlp.wire import (
    FIXED32,
    FIXED64,
    LEN,
    VARINT,
    iter_fields,
    read_varint,
    skip_field,
)

INTRINSIC_FIELDS: Final = frozenset(
    {
        "trace.trace_id",
        "trace.span_id",
        "trace.parent_id",
        "name",
        "span.kind",
        "type",
        "duration_ms",
        "status_code",
        "status_message",
        "error",
        "span.num_events",
        "span.num_links",
    }
)
"""Fields computed from the span itself rather than read from an attribute."""

KIND_NAMES: Final[dict[int, str]] = {
    Span.SPAN_KIND_UNSPECIFIED: "unspecified",
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}
STATUS_ERROR: Final = 2

COMPILED: Final = not __file__.endswith(".py")
"""Whether this module runs compiled (see refinery_py/compiled.py): then a walk over a span's
fields costs less than one substring search, and interpreted it costs ten times as much."""

MAX_PLANNED_KEYS: Final = 61
"""Attribute keys a plan holds at most (one bit each in `SpanFields.seen` and in a mark, whose
bit 62 is MARK_TRACE_STATE); keys asked for after that are looked up one by one
(`span_view.AttributeIndex`)."""

_INT32_SIGN = 1 << 31
_INT32_MASK = (1 << 32) - 1


def _int32(value: int) -> int:
    """A varint as protobuf reads an int32 or enum field: its low 32 bits, signed."""
    value &= _INT32_MASK
    return value - (1 << 32) if value & _INT32_SIGN else value


class _PlannedKey:
    """One planned key, encoded, with its first and last bytes for a quick rejection."""

    __slots__ = ("encoded", "first", "last", "slot")

    def __init__(self, encoded: bytes, slot: int) -> None:
        self.encoded = encoded
        self.first = encoded[0]
        self.last = encoded[-1]
        self.slot = slot

    def is_at(self, raw: bytes, start: int) -> bool:
        """Whether raw[start:start + len(encoded)] is this key (the caller checked the length)."""
        encoded = self.encoded
        length = len(encoded)
        if raw[start] != self.first or raw[start + length - 1] != self.last:
            return False
        # A byte loop: compiled, it beats slicing or bytes.startswith (an allocation or a
        # method call per attribute).
        index = 1
        while index < length - 1:
            if raw[start + index] != encoded[index]:
                return False
            index += 1
        return True


_SHORT_KEY: Final = 128
"""Keys shorter than this are found by their length in one step."""

MARK_ERROR: Final = 1
"""Bit 0 of a span's mark (`span_marks`): its status is ERROR. Bit `slot + 1`: it has an
attribute with the plan's key of that slot."""
MARK_TRACE_STATE: Final = 1 << 62
"""Bit 62 of a span's mark: it has a trace_state field (possibly empty), as upb's `HasField`
would say of it. Exact whatever the plan."""


class FieldPlan:
    """How spans are read, and the attribute keys to read from every span, each with a slot in
    `SpanFields.values`.

    `walks`: read each span in one walk (`SpanFields`) rather than by a search per field
    (`span_search`); by default, when compiled.
    """

    __slots__ = ("_by_length", "_long", "_slots", "keys", "lengths", "walks")

    def __init__(self, *, walks: bool = COMPILED) -> None:
        self.walks = walks
        self.keys: list[str] = []
        self._slots: dict[str, int] = {}
        self._by_length: list[list[_PlannedKey]] = [[] for _ in range(_SHORT_KEY)]
        self.lengths = bytes(_SHORT_KEY)
        """1 at the lengths of planned short keys: most attributes are passed over on that."""
        self._long: list[_PlannedKey] = []

    def slot(self, key: str) -> int:
        """The slot of `key`, planned on first use; -1 when the plan is full."""
        slot = self._slots.get(key)
        if slot is not None:
            return slot
        encoded = key.encode()
        if len(self.keys) >= MAX_PLANNED_KEYS or not encoded:
            return -1
        slot = len(self.keys)
        self.keys.append(key)
        self._slots[key] = slot
        planned = _PlannedKey(encoded, slot)
        length = len(encoded)
        if length < _SHORT_KEY:
            self._by_length[length].append(planned)
            self.lengths = self.lengths[:length] + b"\x01" + self.lengths[length + 1 :]
        else:
            self._long.append(planned)
        return slot

    def marking(self, bits: int) -> tuple[int, bytes]:
        """What marks with these `bits` (see MARK_ERROR) cover, and the screen of keys to check
        for them: the error bit and the bits of the plan's short keys among `bits` (long keys are
        few and rare; marks do not cover them). The screen has a byte per (key length, first
        byte), set for the keys covered: most attribute keys fail it without a call."""
        covered = MARK_ERROR
        screen = bytearray(_SHORT_KEY << 8)
        for slot, key in enumerate(self.keys):
            bit = 1 << (slot + 1)
            encoded = key.encode()
            if bits & bit and len(encoded) < _SHORT_KEY:
                covered |= bit
                screen[_screen_index(encoded, 0, len(encoded))] = 1
        return covered, bytes(screen)

    def match(self, raw: bytes, start: int, length: int) -> int:
        """The slot of the key `raw[start:start + length]`, or -1 when it is not planned."""
        candidates = self._by_length[length] if length < _SHORT_KEY else self._long
        for key in candidates:
            if len(key.encoded) == length and key.is_at(raw, start):
                return key.slot
        return -1


class SpanFields:
    """One span's fields as the walk found them: positions of intrinsics, planned values.

    A position is an offset into the span's bytes (-1: the field is absent); `*_end` is where
    the value ends. `values[slot]` is the first attribute with the plan's key of that slot, or
    None, and bit `slot` of `seen` says whether one was found (its value may be empty).
    """

    __slots__ = (
        "end_time",
        "events",
        "kind",
        "links",
        "name",
        "name_end",
        "parent",
        "parent_end",
        "planned",
        "seen",
        "span_id",
        "span_id_end",
        "start_time",
        "status_code",
        "status_message",
        "status_message_end",
        "trace_id",
        "trace_id_end",
        "values",
    )

    def __init__(self, raw: bytes, plan: FieldPlan) -> None:
        self.trace_id = self.trace_id_end = -1
        self.span_id = self.span_id_end = -1
        self.parent = self.parent_end = -1
        self.name = self.name_end = -1
        self.status_message = self.status_message_end = -1
        self.start_time = self.end_time = -1
        self.kind = 0
        self.status_code = 0
        self.events = 0
        self.links = 0
        self.seen = 0
        self.planned = len(plan.keys)
        """How many of the plan's keys the walk looked for (the plan may grow later)."""
        self.values: list[FieldValue | None] = [None] * self.planned
        self._walk(raw, plan)

    def has(self, slot: int) -> bool:
        return (self.seen >> slot) & 1 == 1

    def intrinsic(self, raw: bytes, field: str) -> FieldValue | None:
        """An intrinsic field (see INTRINSIC_FIELDS) of the span `raw` this walk read."""
        if field == "error":
            return True if self.status_code == STATUS_ERROR else None
        if field == "name":
            return _bytes_at(raw, self.name, self.name_end).decode()
        if field in ("span.kind", "type"):
            return KIND_NAMES.get(self.kind, "unspecified")
        if field == "duration_ms":
            return (_fixed64(raw, self.end_time) - _fixed64(raw, self.start_time)) / 1e6
        if field == "status_code":
            return self.status_code
        if field == "status_message":
            message = _bytes_at(raw, self.status_message, self.status_message_end)
            return message.decode() if message else None
        if field == "trace.trace_id":
            return _bytes_at(raw, self.trace_id, self.trace_id_end).hex()
        if field == "trace.span_id":
            return _bytes_at(raw, self.span_id, self.span_id_end).hex()
        if field == "trace.parent_id":
            parent = _bytes_at(raw, self.parent, self.parent_end)
            return parent.hex() if any(parent) else None
        if field == "span.num_events":
            return self.events
        if field == "span.num_links":
            return self.links
        return None

    def _walk(self, raw: bytes, plan: FieldPlan) -> None:
        lengths = plan.lengths
        pos: i64 = 0
        end: i64 = len(raw)
        start: i64 = 0
        key_end: i64 = 0
        key: i64 = 0
        while pos < end:
            tag: i64 = raw[pos]
            if tag == 0x4A and pos + 1 < end and raw[pos + 1] < 0x80:
                # An attribute shorter than 128 bytes, most of a span: written key first or
                # value first with one short key, the key's length alone rules most out.
                start = pos + 2
                pos = start + raw[pos + 1]
                if pos > end:
                    raise MalformedPayload("span field runs past the end of the span")
                if pos - start >= 2 and raw[start + 1] < 0x80:
                    if raw[start] == 0x0A:
                        key_end = start + 2 + raw[start + 1]
                        if key_end == pos:  # a key without a value
                            if lengths[key_end - start - 2]:
                                self._found(
                                    plan.match(raw, start + 2, key_end - start - 2), raw, pos, pos
                                )
                            continue
                        if (
                            key_end + 2 <= pos
                            and raw[key_end] == 0x12
                            and raw[key_end + 1] < 0x80
                            and key_end + 2 + raw[key_end + 1] == pos
                        ):
                            if lengths[key_end - start - 2]:
                                self._found(
                                    plan.match(raw, start + 2, key_end - start - 2),
                                    raw,
                                    key_end + 2,
                                    pos,
                                )
                            continue
                    elif raw[start] == 0x12:
                        key = start + 2 + raw[start + 1]
                        if (
                            key + 2 <= pos
                            and raw[key] == 0x0A
                            and raw[key + 1] < 0x80
                            and key + 2 + raw[key + 1] == pos
                        ):
                            if lengths[pos - key - 2]:
                                self._found(
                                    plan.match(raw, key + 2, pos - key - 2), raw, start + 2, key
                                )
                            continue
                self._general_attribute(raw, start, pos, plan)
                continue
            if tag < 0x80:
                pos += 1
            else:
                long_tag, after = read_varint(raw, pos)
                tag, pos = long_tag & 0xFFFFFFFF, after
            number = tag >> 3
            wire_type = tag & 7
            if wire_type == LEN:
                length: i64 = raw[pos]
                if length < 0x80:
                    pos += 1
                else:
                    long_length, after = read_varint(raw, pos)
                    if long_length > end:
                        raise MalformedPayload("span field runs past the end of the span")
                    length, pos = long_length, after
                start = pos
                pos += length
                if pos > end:
                    raise MalformedPayload("span field runs past the end of the span")
                if number == 9:
                    self._general_attribute(raw, start, pos, plan)
                elif number == 5:
                    self.name, self.name_end = start, pos
                elif number == 1:
                    self.trace_id, self.trace_id_end = start, pos
                elif number == 2:
                    self.span_id, self.span_id_end = start, pos
                elif number == 4:
                    self.parent, self.parent_end = start, pos
                elif number == 15:
                    self._status(raw, start, pos)
                elif number == 11:
                    self.events += 1
                elif number == 13:
                    self.links += 1
            elif wire_type == FIXED64:
                if number == 7:
                    self.start_time = pos
                elif number == 8:
                    self.end_time = pos
                pos += 8
            elif wire_type == VARINT:
                value, after = read_varint(raw, pos)
                pos = after
                if number == 6:
                    self.kind = _int32(value)
            elif wire_type == FIXED32:
                pos += 4
            else:
                pos = skip_field(raw, pos, wire_type, end)
        if pos != end:
            raise MalformedPayload("span field runs past the end of the span")

    def _found(self, slot: int, raw: bytes, value_start: int, value_end: int) -> None:
        """The attribute of a planned key (`slot` -1: not planned) has its value there."""
        if 0 <= slot < self.planned and not (self.seen >> slot) & 1:
            self.seen |= 1 << slot
            self.values[slot] = decode_any_value(raw, value_start, value_end)

    def _status(self, raw: bytes, start: int, end: int) -> None:
        """One occurrence of Status: its fields override those of earlier occurrences."""
        self.status_code = _status_code(raw, start, end, self.status_code)
        for number, wire_type, _, value_start, value_end in iter_fields(raw, start, end):
            if number == 2 and wire_type == LEN:
                self.status_message, self.status_message_end = value_start, value_end

    def _general_attribute(self, raw: bytes, start: int, end: int, plan: FieldPlan) -> None:
        """Any layout: protobuf's last key field is the key, and the value fields merge."""
        key_start = key_end = -1
        values: list[tuple[int, int]] = []
        for number, wire_type, _, value_start, value_end in iter_fields(raw, start, end):
            if wire_type != LEN:
                continue
            if number == 1:
                key_start, key_end = value_start, value_end
            elif number == 2:
                values.append((value_start, value_end))
        if key_start < 0:
            return  # no key: an empty key, which no field name asks for
        slot = plan.match(raw, key_start, key_end - key_start)
        if len(values) == 1:
            self._found(slot, raw, values[0][0], values[0][1])
        else:
            merged = b"".join(raw[value_start:value_end] for value_start, value_end in values)
            self._found(slot, merged, 0, len(merged))


def span_marks(spans: list[bytes], plan: FieldPlan, screen: bytes) -> list[int]:
    """Each span's mark: what a walk would find of its status and of the plan's keys (as bits,
    see MARK_ERROR). `screen` (from `FieldPlan.marking`) says which keys to check: a mark is
    exact for the bits that call says it covers.

    Taken as spans are buffered, while their bytes are still in the cache: most spans have
    none of the keys rules read in every span (`error`, a flag), and deciding a trace then
    walks only the spans that do, rather than every span of every trace seconds later.
    """
    return [span_mark(raw, plan, screen) for raw in spans]


def count_marked(marks: list[int], bits: int) -> int:
    """How many of `marks` have any of `bits`."""
    count = 0
    for mark in marks:
        if mark & bits:
            count += 1
    return count


def span_mark(raw: bytes, plan: FieldPlan, screen: bytes) -> i64:
    """One span's mark (see `span_marks`). Unlike `SpanFields` it decodes no value and keeps no
    position (the span was validated on arrival), and passes over most attributes on their key's
    length and first byte."""
    mark: i64 = 0
    status: i64 = 0
    pos: i64 = 0
    end: i64 = len(raw)
    while pos < end:
        tag: i64 = raw[pos]
        if tag < 0x80:
            pos += 1
        else:
            long_tag, after = read_varint(raw, pos)
            tag, pos = long_tag & 0xFFFFFFFF, after
        wire_type = tag & 7
        if wire_type != LEN:
            if wire_type == FIXED64:
                pos += 8
            elif wire_type == VARINT:
                pos = read_varint(raw, pos)[1]
            elif wire_type == FIXED32:
                pos += 4
            else:
                pos = skip_field(raw, pos, wire_type, end)
            continue
        length: i64 = raw[pos]
        if length < 0x80:
            pos += 1
        else:
            long_length, after = read_varint(raw, pos)
            length, pos = long_length, after
        start = pos
        pos += length
        if tag == 0x4A:  # field 9: an attribute
            key_start, key_length = _short_key(raw, start, pos)
            if key_start < 0:
                key_start, key_length = _any_layout_key(raw, start, pos)
            if key_start < 0:
                continue
            if key_length < _SHORT_KEY and not screen[_screen_index(raw, key_start, key_length)]:
                continue
            slot = plan.match(raw, key_start, key_length)
            if slot >= 0:
                mark |= 1 << (slot + 1)
        elif tag == 0x7A:  # field 15: the status (occurrences merge)
            status = _status_code(raw, start, pos, status)
        elif tag == 0x1A:  # field 3: trace_state
            mark |= MARK_TRACE_STATE
    if status == STATUS_ERROR:
        mark |= MARK_ERROR
    return mark


def _screen_index(raw: bytes, key_start: i64, key_length: i64) -> i64:
    """A short key's place in a marking screen: its length and first byte."""
    return key_length << 8 | (raw[key_start] if key_length else 0)


def _short_key(raw: bytes, start: i64, end: i64) -> tuple[i64, i64]:
    """Where the key of the KeyValue in raw[start:end] is, and its length, when it is laid out
    as writers do (see SpanFields._walk: one short key, at most one short value, in either
    order); (-1, -1) otherwise."""
    if end - start < 2 or raw[start + 1] >= 0x80:
        return -1, -1
    if raw[start] == 0x0A:
        key_end: i64 = start + 2 + raw[start + 1]
        if key_end == end or (
            key_end + 2 <= end
            and raw[key_end] == 0x12
            and raw[key_end + 1] < 0x80
            and key_end + 2 + raw[key_end + 1] == end
        ):
            return start + 2, key_end - start - 2
    elif raw[start] == 0x12:
        key: i64 = start + 2 + raw[start + 1]
        if (
            key + 2 <= end
            and raw[key] == 0x0A
            and raw[key + 1] < 0x80
            and key + 2 + raw[key + 1] == end
        ):
            return key + 2, end - key - 2
    return -1, -1


def _any_layout_key(raw: bytes, start: i64, end: i64) -> tuple[i64, i64]:
    """Where the key of the KeyValue in raw[start:end] is, and its length, however it is laid
    out (protobuf's last key field is the key); (-1, -1) when it has none."""
    key_start: i64 = -1
    key_stop: i64 = -1
    for number, wire_type, _, value_start, value_end in iter_fields(raw, start, end):
        if number == 1 and wire_type == LEN:
            key_start, key_stop = value_start, value_end
    if key_start < 0:
        return -1, -1
    return key_start, key_stop - key_start


def _status_code(raw: bytes, start: i64, end: i64, code: i64) -> i64:
    """The status code after one occurrence of Status in raw[start:end] (`code` before it)."""
    for number, wire_type, _, value_start, _ in iter_fields(raw, start, end):
        if number == 3 and wire_type == VARINT:
            code = _int32(read_varint(raw, value_start)[0])
    return code


def _bytes_at(raw: bytes, start: int, end: int) -> bytes:
    """raw[start:end], or b"" when the field is absent (start -1)."""
    return raw[start:end] if start >= 0 else b""


def _fixed64(raw: bytes, at: int) -> int:
    """The fixed64 at `at` (0 when absent: -1)."""
    return int.from_bytes(raw[at : at + 8], "little") if at >= 0 else 0
