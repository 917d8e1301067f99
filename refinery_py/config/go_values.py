"""Refinery's value conversions for rule conditions, so a `Datatype` means what it means there.

Refinery (Go) turns values into strings with `fmt`'s `%v`, into ints with `strconv.Atoi` (floats
are truncated), into floats with `strconv.ParseFloat` and into bools with `strconv.ParseBool` of
the `%v` text. Each function returns None where Refinery's conversion fails. The rules loader uses
them to reject Values that can never match; evaluators can use them to compare span values.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
_ATOI = re.compile(r"[+-]?[0-9]+")
_PARSE_FLOAT = re.compile(
    r"[+-]?(([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def go_text(value: object) -> str:
    """`fmt.Sprintf("%v", value)` for the scalar types a rules file or a span can hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float_text(value)
    if isinstance(value, tuple | list):
        return "[" + " ".join(go_text(item) for item in value) + "]"
    if value is None:
        return "<nil>"
    return str(value)


def go_int(value: object) -> int | None:
    """Refinery's tryConvertToInt: ints as they are, floats truncated, decimal strings parsed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str) and _ATOI.fullmatch(value):
        number = int(value)
        return number if _INT64_MIN <= number <= _INT64_MAX else None
    return None


def go_float(value: object) -> float | None:
    """Refinery's tryConvertToFloat: numbers as floats, numeric strings parsed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _PARSE_FLOAT.fullmatch(value):
        return float(value)
    return None


def go_bool(value: object) -> bool | None:
    """`strconv.ParseBool` of the `%v` text: true/false, t/f, 1/0 and their capitalisations."""
    return _GO_BOOLS.get(go_text(value))


def _go_float_text(value: float) -> str:
    """`%v` of a float64 in Go: shortest digits, `%g` layout (`100`, `1.5`, `1e+06`, `1e-05`)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    assert isinstance(exponent, int)  # finite values only reach here
    point = len(digits) + exponent  # position of the decimal point after the first digit run
    exp = point - 1
    prefix = "-" if sign else ""
    # strconv's shortest %g switches to exponent form below 1e-4 and from 1e6 up (1e+06).
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"
