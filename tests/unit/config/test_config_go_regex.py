"""Go (RE2) patterns compiled with Python's re keep their Go meaning."""

from __future__ import annotations

import warnings

import pytest

from refinery_py.config.go_regex import GoRegexError, compile_go_regex


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        (r"^/api/v\d+/users$", "/api/v2/users", True),
        (r"^abc$", "abc\n", False),  # Go's $ (no m flag) is the end of the text only
        (r"(?m)^abc$", "x\nabc\ny", True),
        (r"abc\z", "abc", True),
        (r"\d+", "٣", False),  # Go's \d is ASCII only
        (r"\w+", "é", False),
        (r"\s", "\v", False),  # Go's \s is [\t\n\f\r ]
        (r"\bfoo\b", "a foo b", True),
        (r"a(?i)b|c", "aB", True),
        (r"a(?i)b|c", "C", True),  # the flag holds for the rest of the group, across |
        (r"(?i)ERROR", "error", True),
        (r"x(?i:a)b", "xAb", True),
        (r"x(?i:a)b", "xAB", False),
        (r"[[:alpha:]]+\d", "abc1", True),
        (r"^[[:^digit:]]+$", "abc", True),
        (r"^[[:^digit:]]+$", "ab1", False),
        (r"^[[:punct:]]$", "!", True),
        (r"[\d\s]", " ", True),
        (r"^[^\w]$", "é", True),
        (r"\Qa.b*\E", "a.b*", True),
        (r"\Qa.b*\E", "axb", False),
        (r"\x{263A}", "☺", True),
        (r"\x41", "A", True),
        (r"\101", "A", True),  # octal
        (r"(?P<year>\d{4})-(?<month>\d\d)", "2024-05", True),
        (r"x{,3}", "x{,3}", True),  # not a repeat in Go: literal braces
        (r"^[]a]+$", "]a", True),
        (r"^[a-z&&b]+$", "a&&b", True),  # no set operations in Go
        (r"^[a~~b]+$", "~", True),
        (r"^[+--]+$", "+,-", True),  # a range from + to -, as Go reads it
        (r"[[]", "[", True),
        (r"(?s)a.b", "a\nb", True),
        (r"a.b", "a\nb", False),
    ],
)
def test_go_semantics(pattern: str, text: str, matches: bool) -> None:
    compiled = compile_go_regex(pattern)
    assert bool(compiled.search(text)) is matches


def test_ungreedy_flag_swaps_greediness() -> None:
    pattern = compile_go_regex(r"(?U)a+")
    match = pattern.match("aaa")
    assert match is not None
    assert match.group() == "a"
    lazy_made_greedy = compile_go_regex(r"(?U)a+?").match("aaa")
    assert lazy_made_greedy is not None
    assert lazy_made_greedy.group() == "aaa"
    plain = compile_go_regex(r"a+?").match("aaa")
    assert plain is not None
    assert plain.group() == "a"


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(?=a)", "invalid or unsupported Perl syntax '(?='"),
        (r"(?!a)", "invalid or unsupported Perl syntax '(?!'"),
        (r"(?<=a)b", "invalid or unsupported Perl syntax '(?<='"),
        (r"(?>a)", "invalid or unsupported Perl syntax '(?>'"),
        (r"(a)\1", "invalid escape sequence \\1 (Go has no backreferences)"),
        (r"(?P<n>a)(?P=n)", "invalid or unsupported Perl syntax '(?P='"),
        (r"\pL", "Unicode classes like \\p{L} are not supported"),
        (r"\Z", "invalid escape sequence \\Z (Go writes end of text as \\z)"),
        (r"\e", "invalid escape sequence \\e"),
        (r"a{1001}", "invalid repeat count {1001}"),
        (r"[[:alfa:]]", "invalid character class range [:alfa:]"),
        (r"(a", "missing closing )"),
        (r"a)", "unexpected )"),
        (r"[a", "missing closing ]"),
        ("a\\", "trailing backslash at end of expression"),
        (r"(?x)a", "invalid or unsupported Perl syntax '(?x'"),
        (r"*a", "nothing to repeat"),
    ],
)
def test_what_go_rejects_is_an_error(pattern: str, message: str) -> None:
    with pytest.raises(GoRegexError) as caught:
        compile_go_regex(pattern)
    assert str(caught.value).startswith(message)


def test_python_set_syntax_never_warns() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile_go_regex(r"[[a]--b&&c||d~~e]")
