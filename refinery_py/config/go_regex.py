"""Compile the Go (RE2) regular expressions of `matches` conditions with Python's `re`.

Rules files are written for Refinery, which uses Go's regexp package, so a pattern must mean what
it means in Go. Most syntax is shared; this module rewrites what is not:

- `\\z`, `\\Q...\\E`, `\\x{10FFFF}`, octal `\\12`, `(?<name>...)` and POSIX classes
  like `[[:alpha:]]` become their Python spellings;
- `\\d`, `\\w`, `\\s`, `\\b` stay ASCII-only as in Go (Python's match any Unicode digit or letter);
- `$` without the `m` flag matches only at the very end, as in Go (Python's also matches before
  a final newline);
- inline flags anywhere in the pattern (`a(?i)b`) apply to the rest of the group, as in Go, and the
  ungreedy flag `U` swaps greedy and lazy repetition.

Constructs Go rejects (lookaround, backreferences, atomic groups, `\\Z`) are reported as errors
rather than accepted, because Refinery could not run such a rule.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


def _ascii(predicate: Callable[[str], bool]) -> frozenset[int]:
    return frozenset(code for code in range(128) if predicate(chr(code)))


# Go's character classes are ASCII-only; each is a set of code points rendered as class ranges.
_PERL_CLASSES = {
    "d": _ascii(str.isdigit),
    "w": _ascii(lambda c: c.isalnum() or c == "_"),
    "s": frozenset(map(ord, "\t\n\f\r ")),
}
_POSIX_CLASSES = {
    "alnum": _ascii(str.isalnum),
    "alpha": _ascii(str.isalpha),
    "ascii": _ascii(lambda c: True),
    "blank": frozenset(map(ord, "\t ")),
    "cntrl": _ascii(lambda c: ord(c) < 32 or ord(c) == 127),
    "digit": _ascii(str.isdigit),
    "graph": _ascii(lambda c: 32 < ord(c) < 127),
    "lower": _ascii(str.islower),
    "print": _ascii(lambda c: 32 <= ord(c) < 127),
    "punct": _ascii(lambda c: 32 < ord(c) < 127 and not c.isalnum()),
    "space": frozenset(map(ord, "\t\n\v\f\r ")),
    "upper": _ascii(str.isupper),
    "word": _ascii(lambda c: c.isalnum() or c == "_"),
    "xdigit": _ascii(lambda c: c in "0123456789abcdefABCDEF"),
}
_GO_ESCAPE_LETTERS = frozenset("aftnrvxdDsSwWbBAzpPQEC")
_FLAG_GROUP = re.compile(r"\(\?([imsU]*(?:-[imsU]*)?)([:)])")
_NAMED_GROUP = re.compile(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>")
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")
_MAX_REPEAT = 1000


class GoRegexError(ValueError):
    """The pattern is not a regular expression Go accepts (or one refinery_py can run)."""


def compile_go_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go regular expression to an equivalent Python pattern."""
    translated = _Translator(pattern).run()
    try:
        with warnings.catch_warnings():
            # Python warns about syntax it may change later; the translation escapes those
            # characters already, so a warning here would only repeat what the error says.
            warnings.simplefilter("ignore", FutureWarning)
            return re.compile(translated)
    except re.error as exc:
        raise GoRegexError(exc.msg) from None


@dataclass
class _Group:
    multiline: bool
    ungreedy: bool
    flag_groups: list[str] = field(default_factory=list)
    """Python scoped-flag openings standing in for Go inline flags; closed at `|` and `)`."""


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.src = pattern
        self.pos = 0
        self.out: list[str] = []
        self.groups = [_Group(multiline=False, ungreedy=False)]

    def run(self) -> str:
        while self.pos < len(self.src):
            char = self.src[self.pos]
            self.pos += 1
            if char == "\\":
                self._escape()
            elif char == "[":
                self._char_class()
            elif char == "(":
                self._open_group()
            elif char == ")":
                self._close_group()
            elif char == "|":
                self._alternate()
            elif char in "*+?":
                self._quantifier(char)
            elif char == "{":
                self._brace()
            elif char == "$":
                self.out.append("$" if self.groups[-1].multiline else r"\Z")
            else:
                self.out.append(char)
        if len(self.groups) > 1:
            raise GoRegexError("missing closing )")
        self.out.extend(")" * len(self.groups[0].flag_groups))
        return "".join(self.out)

    def _escape(self) -> None:
        if self.pos >= len(self.src):
            raise GoRegexError("trailing backslash at end of expression")
        char = self.src[self.pos]
        self.pos += 1
        if char in _PERL_CLASSES:
            self.out.append(f"[{_ranges(_PERL_CLASSES[char])}]")
        elif char.lower() in _PERL_CLASSES:
            self.out.append(f"[^{_ranges(_PERL_CLASSES[char.lower()])}]")
        elif char in "bB":
            self.out.append(f"(?a:\\{char})")
        elif char == "z":
            self.out.append(r"\Z")
        elif char == "Q":
            end = self.src.find("\\E", self.pos)
            literal = self.src[self.pos :] if end < 0 else self.src[self.pos : end]
            self.pos = len(self.src) if end < 0 else end + 2
            self.out.append(re.escape(literal))
        else:
            self.out.append(self._common_escape(char))

    def _common_escape(self, char: str) -> str:
        """Escapes that mean the same inside and outside a class."""
        if char == "x" and self.src.startswith("{", self.pos):
            end = self.src.find("}", self.pos)
            digits = self.src[self.pos + 1 : end] if end > 0 else ""
            if not digits or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise GoRegexError("invalid escape sequence \\x{...}")
            self.pos = end + 1
            code = int(digits, 16)
            if code > 0x10FFFF:
                raise GoRegexError(f"invalid escape sequence \\x{{{digits}}}")
            return re.escape(chr(code))
        if char in "01234567":
            return self._octal(char)
        if char in "89":
            raise GoRegexError(f"invalid escape sequence \\{char} (Go has no backreferences)")
        if char in "pP":
            raise GoRegexError(f"Unicode classes like \\{char}{{L}} are not supported")
        if char == "Z":
            raise GoRegexError("invalid escape sequence \\Z (Go writes end of text as \\z)")
        if char.isalnum() and char not in _GO_ESCAPE_LETTERS:
            raise GoRegexError(f"invalid escape sequence \\{char}")
        return "\\" + char

    def _octal(self, first: str) -> str:
        digits = first
        while len(digits) < 3 and self.pos < len(self.src) and self.src[self.pos] in "01234567":
            digits += self.src[self.pos]
            self.pos += 1
        if first != "0" and len(digits) == 1:
            raise GoRegexError(f"invalid escape sequence \\{first} (Go has no backreferences)")
        return re.escape(chr(int(digits, 8)))

    def _char_class(self) -> None:
        parts = ["["]
        if self.src.startswith("^", self.pos):
            parts.append("^")
            self.pos += 1
        first = True
        previous = ""
        while True:
            if self.pos >= len(self.src):
                raise GoRegexError("missing closing ]")
            char = self.src[self.pos]
            self.pos += 1
            if char == "]" and not first:
                break
            first = False
            if char == "[" and self.src.startswith(":", self.pos):
                parts.append(self._posix_class())
            elif char == "\\":
                parts.append(self._class_escape())
            elif char in "[]&~|" or (char == "-" and previous == "-"):
                # Escaped so Python neither warns about future set syntax nor reads a nested set.
                parts.append("\\" + char)
            else:
                parts.append(char)
            previous = char
        parts.append("]")
        self.out.append("".join(parts))

    def _posix_class(self) -> str:
        end = self.src.find(":]", self.pos + 1)
        if end < 0:
            raise GoRegexError("missing closing :] of a POSIX character class")
        name = self.src[self.pos + 1 : end]
        self.pos = end + 2
        codes = _POSIX_CLASSES.get(name.removeprefix("^"))
        if codes is None:
            raise GoRegexError(f"invalid character class range [:{name}:]")
        return _complement(codes) if name.startswith("^") else _ranges(codes)

    def _class_escape(self) -> str:
        if self.pos >= len(self.src):
            raise GoRegexError("missing closing ]")
        char = self.src[self.pos]
        self.pos += 1
        if char in _PERL_CLASSES:
            return _ranges(_PERL_CLASSES[char])
        if char.lower() in _PERL_CLASSES:
            return _complement(_PERL_CLASSES[char.lower()])
        if char in "bBAzQE":
            raise GoRegexError(f"invalid escape sequence \\{char} inside a character class")
        return self._common_escape(char)

    def _open_group(self) -> None:
        rest = self.src[self.pos - 1 :]
        current = self.groups[-1]
        if not rest.startswith("(?"):
            self.groups.append(_Group(current.multiline, current.ungreedy))
            self.out.append("(")
            return
        named = _NAMED_GROUP.match(rest)
        if named:
            self.pos += named.end() - 1
            self.groups.append(_Group(current.multiline, current.ungreedy))
            self.out.append(f"(?P<{named.group(1)}>")
            return
        flags = _FLAG_GROUP.match(rest)
        if flags is not None and flags.group(0) == "(?:":
            self.pos += 2
            self.groups.append(_Group(current.multiline, current.ungreedy))
            self.out.append("(?:")
            return
        if flags is None or flags.group(1) in ("", "-"):
            construct = re.match(r"\(\?(<[=!]|P[=>]|.?)", rest)
            shown = construct.group(0) if construct else rest[:3]
            raise GoRegexError(
                f"invalid or unsupported Perl syntax {shown!r} (Go has no lookaround, "
                "backreferences or atomic groups)"
            )
        self.pos += flags.end() - 1
        on, _, off = flags.group(1).partition("-")
        multiline = ("m" in on or current.multiline) and "m" not in off
        ungreedy = ("U" in on or current.ungreedy) and "U" not in off
        python_flags = on.replace("U", "") + ("-" + off.replace("U", "") if off.strip("U") else "")
        opening = f"(?{python_flags}:" if python_flags else "(?:"
        if flags.group(2) == ":":
            self.groups.append(_Group(multiline, ungreedy))
        else:
            # `(?i)` in Go applies to the rest of the enclosing group; a Python scoped group
            # reproduces that, closed again at the group's end (and around each `|`).
            current.multiline, current.ungreedy = multiline, ungreedy
            current.flag_groups.append(opening)
        self.out.append(opening)

    def _close_group(self) -> None:
        if len(self.groups) == 1:
            raise GoRegexError("unexpected )")
        group = self.groups.pop()
        self.out.append(")" * (len(group.flag_groups) + 1))

    def _alternate(self) -> None:
        group = self.groups[-1]
        self.out.append(")" * len(group.flag_groups) + "|" + "".join(group.flag_groups))

    def _quantifier(self, text: str) -> None:
        lazy = self.src.startswith("?", self.pos)
        if lazy:
            self.pos += 1
        if self.groups[-1].ungreedy:
            lazy = not lazy
        self.out.append(text + ("?" if lazy else ""))

    def _brace(self) -> None:
        repeat = _REPEAT.match(self.src, self.pos - 1)
        if repeat is None:
            self.out.append("\\{")  # Go reads a brace that is not a repeat count literally.
            return
        counts = [int(count) for count in (repeat.group(1), repeat.group(3)) if count]
        if any(count > _MAX_REPEAT for count in counts):
            raise GoRegexError(f"invalid repeat count {repeat.group(0)}")
        self.pos = repeat.end()
        self._quantifier(repeat.group(0))


def _ranges(codes: Iterable[int]) -> str:
    """A character-class body (without brackets) for a set of code points: `\\x30-\\x39`."""
    out = []
    ordered = sorted(codes)
    index = 0
    while index < len(ordered):
        low = high = ordered[index]
        while index + 1 < len(ordered) and ordered[index + 1] == high + 1:
            index += 1
            high = ordered[index]
        out.append(_code(low) if low == high else f"{_code(low)}-{_code(high)}")
        index += 1
    return "".join(out)


def _complement(codes: frozenset[int]) -> str:
    """Everything but an ASCII set, as class ranges (all of Unicode above ASCII included)."""
    return _ranges(set(range(128)) - codes) + "\\x80-\\U0010ffff"


def _code(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\U{code:08x}"
