"""What a compiled condition operator is: a test of one span value."""

from __future__ import annotations

from typing import Protocol

from refinery_py.model import FieldValue


class Predicate(Protocol):
    """A compiled operator: does this span value (None when absent) meet the condition?"""

    def test(self, value: FieldValue | None, /) -> bool: ...


class Never:
    """A condition that can never match.

    Refinery leaves a condition without a match function when setting it up fails (a bool
    `Datatype` with `in`, an `in` Value that is neither a list nor a string or number, a bad
    regular expression); its untyped fallback has no case for those operators, so they never match.
    """

    __slots__ = ()

    def test(self, value: FieldValue | None, /) -> bool:
        return False
