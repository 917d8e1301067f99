"""The Go regular expressions of `matches` conditions, run by RE2.

Rules files are written for Refinery, which uses Go's regexp package: RE2 syntax and semantics,
in time linear in the text. Python's `re` backtracks, and a pattern users write every day is
super-linear there: `.*SELECT.*FROM.*orders.*WHERE` took 0.19 s on a 1 KB `db.statement`, 2.9 s
on 2 KB and 46 s on 4 KB, stalling the worker that decides the trace (nested repeats such as
`(a+)+` are exponential). RE2 (google-re2) is the engine Go's package was written after: it reads
the same syntax — ASCII `\\d \\w \\s \\b`, `$` at the very end of the text without the `m` flag,
inline flags, `(?U)`, `\\Q...\\E`, `\\pL`, POSIX classes, octal and `\\x{...}` escapes — with the
same leftmost-first matching, and took 83 µs on that 4 KB statement.

One construct RE2 takes and Go rejects, `\\C` (any byte), is rejected here too, because
Refinery could not run such a rule. Everything else either engine rejects (lookaround,
backreferences, atomic groups, `\\Z`, repeats over 1000) is an error with RE2's message.

Matching goes through RE2's compiled object directly: the Python wrapper's `search` spends 1-2 µs
per call turning byte offsets back into character offsets, which a yes-or-no test never needs.
A test of a short route costs 0.76 µs this way (2.6 µs through the wrapper, 0.19 µs with `re`):
with the default rules, about 0.9 µs more per decided trace than `re` (80-85 µs in all).
"""

from __future__ import annotations

from typing import Any

from re2 import _re2  # type: ignore[import-untyped]

_OPTIONS: Any = _re2.RE2.Options()
_OPTIONS.log_errors = False  # a rules file's bad pattern is reported once, by the loader
_OPTIONS.never_capture = True  # `matches` asks whether, never where: no submatches to track
_UNANCHORED: Any = _re2.RE2.Anchor.UNANCHORED


class GoRegexError(ValueError):
    """The pattern is not a regular expression Go accepts."""


class GoRegex:
    """A compiled Go regular expression: does it match anywhere in a text (Go's MatchString)?"""

    __slots__ = ("_match", "pattern")

    def __init__(self, pattern: str) -> None:
        _reject_any_byte(pattern)
        compiled = _re2.RE2(pattern.encode("utf-8", "surrogatepass"), _OPTIONS)
        if not compiled.ok():
            raise GoRegexError(compiled.error().decode("utf-8", "replace"))
        self.pattern = pattern
        self._match = compiled.Match

    def search(self, text: str) -> bool:
        """Whether the pattern matches somewhere in `text`."""
        data = text.encode("utf-8", "surrogatepass")
        found: tuple[tuple[int, int], ...] = self._match(_UNANCHORED, data, 0, len(data))
        return found[0][0] >= 0

    def __repr__(self) -> str:
        return f"GoRegex({self.pattern!r})"

    def __reduce__(self) -> tuple[type[GoRegex], tuple[str]]:
        # RE2's objects do not pickle; a worker process compiles the pattern again.
        return GoRegex, (self.pattern,)


def compile_go_regex(pattern: str) -> GoRegex:
    """Compile a Go regular expression; GoRegexError says what Go would object to."""
    return GoRegex(pattern)


def _reject_any_byte(pattern: str) -> None:
    """Raise for `\\C` outside `\\Q...\\E`: RE2 matches any byte with it, Go has no such escape."""
    position = 0
    while (position := pattern.find("\\", position)) >= 0:
        escaped = pattern[position + 1 : position + 2]
        if escaped == "C":
            raise GoRegexError("invalid escape sequence: \\C")
        if escaped == "Q":
            end = pattern.find("\\E", position + 2)
            if end < 0:
                return
            position = end
        position += 2
