"""Query-string parameters of the query API, read strictly: a bad value says which and why.

Times are RFC 3339 (`2026-05-09T07:35:25.123456789Z`, any offset, up to nanoseconds), `now`, or a
duration ago (`15m`, `1h`, `7d`, `500ms`). Cursors are opaque to clients: the keyset position
(start time, trace ID) of the last trace of a page, base64url-encoded.

The command line parses its `--store` queries with these same functions, so a query means the
same thing against a file as against a node.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import difflib
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone

from refinery_py.store.queries import TraceFilter

TRACES_PARAMETERS = (
    "customer",
    "service",
    "name",
    "error",
    "min_duration_ms",
    "since",
    "until",
    "limit",
    "cursor",
)
SUMMARY_PARAMETERS = ("since", "until")
CUSTOMERS_PARAMETERS = ("since", "until", "limit")

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
DEFAULT_CUSTOMERS_LIMIT = 100
MAX_CUSTOMERS_LIMIT = 10_000
MAX_INT64 = (1 << 63) - 1

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}
_AGO = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)
_TIME_HELP = "an RFC 3339 time (2026-05-09T07:35:25Z), 'now', or a duration ago (15m, 1h, 7d)"


class BadParameter(ValueError):
    """A query parameter the API cannot use; the message names it and says why."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}")
        self.name = name


def _single(items: Iterable[tuple[str, str]], allowed: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in items:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise BadParameter(key, f"unknown parameter{hint}; this endpoint takes {allowed}")
        if key in values:
            raise BadParameter(key, "given more than once")
        values[key] = value
    return values


def parse_time(name: str, text: str, now: float) -> int:
    """A time parameter as Unix nanoseconds (`now` is the current time in seconds)."""
    text = text.strip()
    now_ns = int(now * 1e9)
    if text == "now":
        return now_ns
    ago = _AGO.fullmatch(text)
    if ago:
        amount, unit = ago.groups()
        return now_ns - int(float(amount) * _UNITS_NS[unit])
    match = _RFC3339.fullmatch(text)
    if not match:
        raise BadParameter(name, f"{text!r} is not {_TIME_HELP}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset in ("Z", "z"):
        zone = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=zone
        )
    except ValueError as exc:
        raise BadParameter(name, f"{text!r} is not a valid time: {exc}") from None
    seconds = calendar.timegm(moment.utctimetuple())
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return seconds * 1_000_000_000 + nanos


def parse_window(values: dict[str, str], now: float) -> tuple[int | None, int | None]:
    """`since` (inclusive) and `until` (exclusive) as Unix nanoseconds; None when absent."""
    since = parse_time("since", values["since"], now) if values.get("since") else None
    until = parse_time("until", values["until"], now) if values.get("until") else None
    if since is not None and until is not None and until <= since:
        raise BadParameter("until", "must be later than since")
    return since, until


def _parse_int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(name, f"{text!r} is not a whole number") from None
    if not low <= value <= high:
        raise BadParameter(name, f"must be from {low} to {high}, not {value}")
    return value


def _parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadParameter(name, f"{text!r} is not true or false")


def _parse_duration_ms(name: str, text: str) -> int:
    try:
        millis = float(text)
    except ValueError:
        raise BadParameter(name, f"{text!r} is not a number of milliseconds") from None
    if not 0 <= millis < MAX_INT64 / 1e6:  # also refuses nan and inf
        raise BadParameter(name, f"must be a non-negative number of milliseconds, not {text!r}")
    return int(millis * 1_000_000)


def trace_filter(items: Iterable[tuple[str, str]], now: float) -> TraceFilter:
    """The `GET /api/v1/traces` parameters as a TraceFilter.

    Text filters (customer, service, name) match exactly, and an empty value is a real filter:
    `customer=` lists the traces that have no customer. The others ignore an empty value.
    """
    values = _single(items, TRACES_PARAMETERS)
    since, until = parse_window(values, now)
    return TraceFilter(
        customer=values.get("customer"),
        service=values.get("service"),
        name=values.get("name"),
        error=_parse_bool("error", values["error"]) if values.get("error") else None,
        min_duration_ns=(
            _parse_duration_ms("min_duration_ms", values["min_duration_ms"])
            if values.get("min_duration_ms")
            else None
        ),
        since_ns=since,
        until_ns=until,
        limit=(
            _parse_int("limit", values["limit"], 1, MAX_LIMIT)
            if values.get("limit")
            else DEFAULT_LIMIT
        ),
        after=decode_cursor(values["cursor"]) if values.get("cursor") else None,
    )


def summary_window(items: Iterable[tuple[str, str]], now: float) -> tuple[int | None, int | None]:
    """The `GET /api/v1/customers/{customer}/summary` parameters: its time window."""
    return parse_window(_single(items, SUMMARY_PARAMETERS), now)


def customers_query(
    items: Iterable[tuple[str, str]], now: float
) -> tuple[int | None, int | None, int]:
    """The `GET /api/v1/customers` parameters: its time window and how many to list."""
    values = _single(items, CUSTOMERS_PARAMETERS)
    since, until = parse_window(values, now)
    limit = (
        _parse_int("limit", values["limit"], 1, MAX_CUSTOMERS_LIMIT)
        if values.get("limit")
        else DEFAULT_CUSTOMERS_LIMIT
    )
    return since, until, limit


def encode_cursor(position: tuple[int, bytes]) -> str:
    """A page's continuation: the (start_ns, trace_id) keyset position, opaque to clients."""
    start_ns, trace_id = position
    text = f"{start_ns}:{trace_id.hex()}"
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[int, bytes]:
    """The keyset position in a cursor this API returned."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        start_text, _, trace_hex = text.partition(":")
        return int(start_text), bytes.fromhex(trace_hex)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadParameter(
            "cursor", "not a cursor this API returned (pass next_cursor as is)"
        ) from None


def parse_trace_id(text: str) -> bytes:
    """A trace ID in a path: 32 hex digits, either case."""
    if len(text) != 32:
        raise BadParameter("trace_id", f"must be 32 hex digits, not {len(text)} characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise BadParameter("trace_id", f"{text!r} is not hex") from None
