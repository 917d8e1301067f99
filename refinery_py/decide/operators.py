"""Condition operators: one small object per operator and datatype, built once per condition.

Each object's `test(value)` answers whether a span value meets the condition; `value` is None when
the span lacks the field. The choice of object follows Refinery's setMatchesFunction; the
comparison operators live in `comparisons`.
"""

from __future__ import annotations

import math

from refinery_py.config.go_regex import GoRegex, GoRegexError, compile_go_regex
from refinery_py.config.rules_spec import ConditionSpec
from refinery_py.decide.comparisons import COMPARISON_OPERATORS, compile_comparison
from refinery_py.decide.goconv import go_string, to_float, to_int
from refinery_py.decide.predicate import Never, Predicate
from refinery_py.model import FieldValue


class Exists:
    __slots__ = ()

    def test(self, value: FieldValue | None, /) -> bool:
        return value is not None


class NotExists:
    __slots__ = ()

    def test(self, value: FieldValue | None, /) -> bool:
        return value is None


class StartsWith:
    """`starts-with` on the `%v` text; Datatype is ignored, as in Refinery.

    Quirk kept from Refinery: a missing field is the text `<nil>`, so `starts-with: "<"` matches.
    """

    __slots__ = ("_prefix",)

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def test(self, value: FieldValue | None, /) -> bool:
        text = value if type(value) is str else go_string(value)
        return text.startswith(self._prefix)


class Contains:
    """`contains` on the `%v` text; a missing field is `<nil>` (so `contains: nil` matches it)."""

    __slots__ = ("_part",)

    def __init__(self, part: str) -> None:
        self._part = part

    def test(self, value: FieldValue | None, /) -> bool:
        text = value if type(value) is str else go_string(value)
        return self._part in text


class DoesNotContain:
    """`does-not-contain` on the `%v` text.

    Quirk kept from Refinery: a missing field reads as `<nil>`, which does not contain the Value,
    so `does-not-contain` matches spans that lack the field.
    """

    __slots__ = ("_part",)

    def __init__(self, part: str) -> None:
        self._part = part

    def test(self, value: FieldValue | None, /) -> bool:
        text = value if type(value) is str else go_string(value)
        return self._part not in text


class InStrings:
    """`in`/`not-in` without Datatype or with `string`: membership of the `%v` text.

    Quirk kept from Refinery: a missing field is `<nil>`, so `not-in` matches spans lacking it.
    """

    __slots__ = ("_negate", "_values")

    def __init__(self, values: frozenset[str], negate: bool) -> None:
        self._values = values
        self._negate = negate

    def test(self, value: FieldValue | None, /) -> bool:
        text = value if type(value) is str else go_string(value)
        return (text in self._values) is not self._negate


class InInts:
    """`in`/`not-in` with `Datatype: int`; an unconvertible or missing value is never `in`."""

    __slots__ = ("_negate", "_values")

    def __init__(self, values: frozenset[int], negate: bool) -> None:
        self._values = values
        self._negate = negate

    def test(self, value: FieldValue | None, /) -> bool:
        number = to_int(value)
        return (number is not None and number in self._values) is not self._negate


class InFloats:
    """`in`/`not-in` with `Datatype: float`; NaN is in no set, as with Go map keys."""

    __slots__ = ("_negate", "_values")

    def __init__(self, values: frozenset[float], negate: bool) -> None:
        self._values = values
        self._negate = negate

    def test(self, value: FieldValue | None, /) -> bool:
        number = to_float(value)
        hit = number is not None and not math.isnan(number) and number in self._values
        return hit is not self._negate


class Matches:
    """`matches`: the regular expression found anywhere in the `%v` text (Go's MatchString).

    Quirk kept from Refinery: a missing field is searched as `<nil>`, so `.*` matches it.
    """

    __slots__ = ("_search",)

    def __init__(self, pattern: GoRegex) -> None:
        self._search = pattern.search

    def test(self, value: FieldValue | None, /) -> bool:
        text = value if type(value) is str else go_string(value)
        return self._search(text)


def _membership(operator: str, datatype: str | None, value: object) -> Predicate:
    if isinstance(value, tuple | list):
        items: tuple[object, ...] = tuple(value)
    elif type(value) in (str, int, float):
        items = (value,)
    else:
        return Never()
    negate = operator == "not-in"
    if datatype is None or datatype == "string":
        return InStrings(frozenset(go_string(item) for item in items), negate)
    if datatype == "int":
        ints = (to_int(item) for item in items)
        # Refinery skips list items that do not convert.
        return InInts(frozenset(n for n in ints if n is not None), negate)
    if datatype == "float":
        floats = (to_float(item) for item in items)
        return InFloats(frozenset(f for f in floats if f is not None), negate)
    return Never()


def compile_operator(spec: ConditionSpec) -> Predicate:
    """The predicate for a condition's operator, Value and Datatype, set up once.

    `has-root-span` is a trace-level check the rules sampler makes itself; asked for here (as a
    span-scope rule would), it gets `Never`, as in Refinery.
    """
    operator, value, datatype = spec.operator, spec.value, spec.datatype
    if operator == "exists":
        return Exists()
    if operator == "not-exists":
        return NotExists()
    if operator in COMPARISON_OPERATORS:
        return compile_comparison(operator, datatype, value)
    if operator == "starts-with":
        return StartsWith(go_string(value))
    if operator == "contains":
        return Contains(go_string(value))
    if operator == "does-not-contain":
        return DoesNotContain(go_string(value))
    if operator in ("in", "not-in"):
        return _membership(operator, datatype, value)
    if operator == "matches":
        pattern = spec.pattern
        if pattern is None:
            try:
                pattern = compile_go_regex(go_string(value))
            except GoRegexError:
                return Never()
        return Matches(pattern)
    if operator == "has-root-span":
        return Never()
    raise ValueError(f"unknown condition operator {operator!r} (line {spec.line})")
