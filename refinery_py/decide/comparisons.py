"""The comparison operators (`=`, `!=`, `>`, `<`, `>=`, `<=`), typed and untyped.

With a `Datatype` both sides are converted first (Refinery's typed path, setCompareOperators);
without one, or when Refinery fails to set the typed path up, values compare only with values of
a like type (its untyped path, conditionMatchesValue and compare). `value` is None when the span
lacks the field.
"""

from __future__ import annotations

import math

from refinery_py.decide.goconv import go_string, to_bool, to_float, to_int
from refinery_py.decide.predicate import Never, Predicate
from refinery_py.model import FieldValue

COMPARISON_OPERATORS = ("=", "!=", ">", "<", ">=", "<=")

# Which outcomes of a three-way comparison (less, equal, more) each comparison operator accepts.
_ACCEPT: dict[str, tuple[bool, bool, bool]] = {
    "=": (False, True, False),
    "!=": (True, False, True),
    ">": (False, False, True),
    "<": (True, False, False),
    ">=": (False, True, True),
    "<=": (True, True, False),
}


class _Compare:
    """Shared set-up for three-way comparisons: which outcomes the operator accepts."""

    __slots__ = ("_eq", "_gt", "_lt")

    def __init__(self, operator: str) -> None:
        self._lt, self._eq, self._gt = _ACCEPT[operator]


class UntypedNumber(_Compare):
    """No Datatype, numeric Value: matches int and float span values, never bools or strings.

    Like Go, an int meets a float Value as a float, and a float meets an int Value as a float; a NaN
    is neither less nor more than anything, so it compares as equal (Refinery's compare falls
    through to `equal`).
    """

    __slots__ = ("_float", "_int")

    def __init__(self, operator: str, value: int | float) -> None:
        super().__init__(operator)
        self._int = value if type(value) is int else None
        try:
            self._float = float(value)
        except OverflowError:  # an int Value beyond float64, which Go's YAML never yields
            self._float = math.copysign(math.inf, value)

    def test(self, value: FieldValue | None, /) -> bool:
        if type(value) is int:
            if self._int is not None:
                a: int | float = value
                b: int | float = self._int
            else:
                a, b = float(value), self._float
        elif type(value) is float:
            a, b = value, self._float
        else:
            return False
        if a < b:
            return self._lt
        if a > b:
            return self._gt
        return self._eq


class UntypedBool(_Compare):
    """No Datatype, bool Value: only bool span values compare (false < true)."""

    __slots__ = ("_value",)

    def __init__(self, operator: str, value: bool) -> None:
        super().__init__(operator)
        self._value = value

    def test(self, value: FieldValue | None, /) -> bool:
        if type(value) is not bool:
            return False
        if value == self._value:
            return self._eq
        return self._gt if value else self._lt


class UntypedString(_Compare):
    """No Datatype, string Value: only string span values compare (byte order, like Go)."""

    __slots__ = ("_value",)

    def __init__(self, operator: str, value: str) -> None:
        super().__init__(operator)
        self._value = value

    def test(self, value: FieldValue | None, /) -> bool:
        if type(value) is not str:
            return False
        if value < self._value:
            return self._lt
        if value > self._value:
            return self._gt
        return self._eq


class UntypedNoValue:
    """No Datatype and no Value: Refinery's compare ranks every present value above nil.

    Quirk kept from Refinery: so `!=`, `>` and `>=` without a Value match any present field, and
    `=`, `<`, `<=` never match.
    """

    __slots__ = ("_present",)

    def __init__(self, operator: str) -> None:
        self._present = _ACCEPT[operator][2]

    def test(self, value: FieldValue | None, /) -> bool:
        return self._present and value is not None


class StringCompare(_Compare):
    """`Datatype: string`: both sides as Go's `%v` text, compared bytewise.

    Quirk kept from Refinery: no presence check, so a missing field compares as the text `<nil>`;
    `!=` therefore matches spans that lack the field.
    """

    __slots__ = ("_value",)

    def __init__(self, operator: str, value: str) -> None:
        super().__init__(operator)
        self._value = value

    def test(self, value: FieldValue | None, /) -> bool:
        text = value if type(value) is str else go_string(value)
        if text < self._value:
            return self._lt
        if text > self._value:
            return self._gt
        return self._eq


class IntCompare(_Compare):
    """`Datatype: int`: span values converted like tryConvertToInt; unconvertible never match."""

    __slots__ = ("_value",)

    def __init__(self, operator: str, value: int) -> None:
        super().__init__(operator)
        self._value = value

    def test(self, value: FieldValue | None, /) -> bool:
        number = to_int(value)
        if number is None:
            return False
        if number < self._value:
            return self._lt
        if number > self._value:
            return self._gt
        return self._eq


class FloatCompare(_Compare):
    """`Datatype: float`: span values converted like tryConvertToFloat; others never match."""

    __slots__ = ("_value",)

    def __init__(self, operator: str, value: float) -> None:
        super().__init__(operator)
        self._value = value

    def test(self, value: FieldValue | None, /) -> bool:
        number = to_float(value)
        if number is None:
            return False
        if number < self._value:
            return self._lt
        if number > self._value:
            return self._gt
        return self._eq


class BoolEquals:
    """`Datatype: bool` with `=` or `!=`: a present value read like TryConvertToBool.

    Text other than Go's bool words (`1`, `t`, `TRUE`, `0`, `f`, `False`, ...) reads as false, so
    `!= true` matches a field holding `"yes"`.
    """

    __slots__ = ("_equal", "_value")

    def __init__(self, operator: str, value: bool) -> None:
        self._value = value
        self._equal = operator == "="

    def test(self, value: FieldValue | None, /) -> bool:
        if value is None:
            return False
        return (to_bool(value) == self._value) is self._equal


def _untyped(operator: str, value: object) -> Predicate:
    # Refinery's untyped path only lets `not-exists` see a missing field, so here every
    # comparison, `!=` included, fails on a span without the field (unlike `Datatype: string`).
    if type(value) is bool:
        return UntypedBool(operator, value)
    if type(value) is int or type(value) is float:
        return UntypedNumber(operator, value)
    if type(value) is str:
        return UntypedString(operator, value)
    if value is None:
        return UntypedNoValue(operator)
    return Never()  # a list Value: Refinery's compare knows no such type


def compile_comparison(operator: str, datatype: str | None, value: object) -> Predicate:
    """The predicate for `=`, `!=`, `>`, `<`, `>=`, `<=` with a Value and optional Datatype."""
    if datatype == "string":
        return StringCompare(operator, go_string(value))
    if datatype == "int":
        number = to_int(value)
        # Refinery's set-up fails on an unconvertible Value and it falls back to the untyped path.
        return _untyped(operator, value) if number is None else IntCompare(operator, number)
    if datatype == "float":
        real = to_float(value)
        return _untyped(operator, value) if real is None else FloatCompare(operator, real)
    if datatype == "bool" and operator in ("=", "!="):
        return BoolEquals(operator, to_bool(value))
    # No Datatype, or `bool` with an ordering operator, which Refinery leaves to the untyped path.
    return _untyped(operator, value)
