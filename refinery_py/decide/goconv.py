"""Value conversions exactly as Refinery's Go code performs them.

Refinery compares values after converting them with Go's `fmt.Sprintf("%v")`, `strconv.Atoi`,
`strconv.ParseFloat` and `strconv.ParseBool`. Python's `str`, `int` and `float` accept and print
different things (`float("1 ")`, `int("1_0")`, `str(1e6)`), so rules would decide differently from
Refinery on the same spans. Everything here reproduces the Go behaviour; `None` stands for Go's
`nil` (a missing field). These run at evaluation time on span values, so they avoid allocation on
the common paths (a `str` passes through `go_string` untouched).
"""

from __future__ import annotations

import math
import re

MIN_INT64 = -(1 << 63)
MAX_INT64 = (1 << 63) - 1

_ATOI = re.compile(r"[+-]?[0-9]+", re.ASCII)
# Each number is read one way only (`1(\.2)?`, not `1\.?2`): with two ways to split the digits,
# a failed match tried all of them, and a long digit string in a span took seconds.
_DEC_FLOAT = re.compile(
    r"[+-]?(?:[0-9_]+(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][+-]?[0-9][0-9_]*)?", re.ASCII
)
_HEX_FLOAT = re.compile(
    r"[+-]?0[xX](?:[0-9a-fA-F_]+(?:\.[0-9a-fA-F_]*)?|\.[0-9a-fA-F_]+)[pP][+-]?[0-9][0-9_]*",
    re.ASCII,
)
_BOOL_WORDS = {
    "1": True,
    "t": True,
    "T": True,
    "TRUE": True,
    "true": True,
    "True": True,
    "0": False,
    "f": False,
    "F": False,
    "FALSE": False,
    "false": False,
    "False": False,
}


def _shortest_digits(f: float) -> tuple[str, int]:
    """The shortest round-trip decimal digits of a finite f > 0, and the decimal point position.

    The value is 0.<digits> × 10**point. Python's repr and Go's shortest formatting both produce
    the shortest digit string that reads back as the same float, so the digits agree.
    """
    mantissa, _, exponent = repr(f).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    return stripped.rstrip("0"), point


def _fixed(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def go_float_string(f: float) -> str:
    """Go's `%v` of a float64: the shortest digits that read back as the same value.

    Go switches to the exponent form when the decimal exponent is < -4 or >= 6 (so 1e6 prints
    `1e+06` while 123456.7 prints `123456.7`), with at least two exponent digits; infinities and
    NaN print as `+Inf`, `-Inf`, `NaN`.
    """
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0:
        return sign + "0"
    digits, point = _shortest_digits(abs(f))
    exponent = point - 1
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return sign + _fixed(digits, point)


def go_fixed_string(f: float) -> str:
    """Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest digits, never an exponent."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0:
        return sign + "0"
    digits, point = _shortest_digits(abs(f))
    return sign + _fixed(digits, point)


def go_string(value: object) -> str:
    """Go's `fmt.Sprintf("%v", value)` for the values rules see (Refinery's convertToString)."""
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return go_float_string(value)
    if value is None:
        return "<nil>"
    if isinstance(value, tuple | list):
        return "[" + " ".join(go_string(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = sorted((go_string(k), go_string(v)) for k, v in value.items())
        return "map[" + " ".join(f"{k}:{v}" for k, v in pairs) + "]"
    return str(value)


def _underscores_ok(text: str) -> bool:
    """Go's underscoreOK: each `_` must sit between digits (a base prefix counts as a digit)."""
    if text[:1] in ("+", "-"):
        text = text[1:]
    saw = "^"
    start = 0
    hexadecimal = False
    if len(text) >= 2 and text[0] == "0" and text[1] in "bBoOxX":
        start, saw, hexadecimal = 2, "0", text[1] in "xX"
    for char in text[start:]:
        if "0" <= char <= "9" or (hexadecimal and char in "abcdefABCDEF"):
            saw = "0"
        elif char == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def parse_go_int(text: str) -> int | None:
    """Go's `strconv.Atoi`: optional sign and ASCII digits only, within int64; else None."""
    if _ATOI.fullmatch(text) is None:
        return None
    number = int(text)
    return number if MIN_INT64 <= number <= MAX_INT64 else None


def parse_go_float(text: str) -> float | None:
    """Go's `strconv.ParseFloat(text, 64)`; None where Go reports an error (syntax or range).

    Go accepts `inf`/`infinity` (any case, signed), unsigned `nan`, digit-separating underscores
    and hexadecimal `0x1.8p3`; it rejects surrounding spaces and overflow to infinity.
    """
    signed = text[:1] in ("+", "-")
    word = (text[1:] if signed else text).lower()
    if word in ("inf", "infinity"):
        return -math.inf if text[0] == "-" else math.inf
    if word == "nan":
        return None if signed else math.nan
    if _DEC_FLOAT.fullmatch(text) is not None:
        if "_" in text and not _underscores_ok(text):
            return None
        number = float(text.replace("_", ""))
    elif _HEX_FLOAT.fullmatch(text) is not None:
        if "_" in text and not _underscores_ok(text):
            return None
        try:
            number = float.fromhex(text.replace("_", ""))
        except OverflowError:
            return None
    else:
        return None
    return None if math.isinf(number) else number


def _float_to_int(f: float) -> int:
    """Go's `int(f)` on amd64: truncation, with NaN and out-of-range values becoming MinInt64."""
    if not (MIN_INT64 <= f < 2.0**63):  # also true for NaN, which compares false with all
        return MIN_INT64
    return int(f)


def to_int(value: object) -> int | None:
    """Refinery's tryConvertToInt: ints as-is, floats truncated, strings by Atoi; else None."""
    if type(value) is int:
        return value
    if type(value) is float:
        return _float_to_int(value)
    if type(value) is str:
        return parse_go_int(value)
    return None


def to_float(value: object) -> float | None:
    """Refinery's tryConvertToFloat: numbers as float64, strings by ParseFloat; else None."""
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:  # beyond float64; Go's int64 never gets here
            return None
    if type(value) is str:
        return parse_go_float(value)
    return None


def to_bool(value: object) -> bool:
    """Refinery's TryConvertToBool: ParseBool of the `%v` text; anything unparsable is false."""
    if type(value) is bool:
        return value
    return _BOOL_WORDS.get(go_string(value), False)
