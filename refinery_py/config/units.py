"""Durations and sizes as people write them in config files (`500ms`, `1m30s`, `512MiB`)."""

from __future__ import annotations

import math
import re
from typing import NewType

Seconds = NewType("Seconds", float)
"""A duration in seconds, written in YAML as `500ms`, `2s`, `1h30m` (Go's format) or a number."""

ByteSize = NewType("ByteSize", int)
"""A size in bytes, written in YAML as `16MiB`, `1GB`, `512k` or a plain number of bytes."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,  # Go accepts both the micro sign (U+00B5) and Greek mu (U+03BC)
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_SIZE = re.compile(r"(\d+(?:\.\d*)?)\s*([kKmMgGtT]?)(i?)([bB]?)")
_SIZE_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_duration(text: str) -> Seconds:
    """Parse a Go-style duration (`1m0s`, `250ms`, `1.5h`); a bare number means seconds.

    Raises ValueError with a message saying what is accepted.
    """
    spec = text.strip()
    try:
        value = float(spec)
    except ValueError:
        pass
    else:
        if value < 0:
            raise ValueError(f"duration {text!r} is negative")
        if not math.isfinite(value):
            raise ValueError(f"duration {text!r} is not a finite number of seconds")
        return Seconds(value)
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(spec):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(spec) or not spec:
        raise ValueError(f"{text!r} is not a duration; write it like 500ms, 2s, 1m30s or 1h")
    return Seconds(total)


def parse_size(text: str) -> ByteSize:
    """Parse a size: `16MiB`/`16Mi` (powers of 1024), `16MB`/`16M` (powers of 1000), or bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a size; write it like 512MiB, 2GiB, 64KB or a byte count"
        )
    number, unit, binary, _ = match.groups()
    base = 1024 if binary else 1000
    return ByteSize(int(float(number) * base ** _SIZE_POWERS[unit.lower()]))


def format_duration(seconds: float) -> str:
    """Render seconds the way the config file accepts them (`2s`, `500ms`, `1m30s`)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole_minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(whole_minutes), 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)


def format_size(size: int) -> str:
    """Render a byte count in the largest binary unit that divides it (`16MiB`)."""
    for unit, power in (("TiB", 4), ("GiB", 3), ("MiB", 2), ("KiB", 1)):
        if size and size % 1024**power == 0:
            return f"{size // 1024**power}{unit}"
    return str(size)
