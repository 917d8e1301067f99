"""Go (RE2) patterns, run by RE2, keep their Go meaning, and take time linear in the text."""

from __future__ import annotations

import pickle

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
        (r"\pL+\d", "é1", True),  # Unicode classes, as in Go
        (r"^\p{Greek}+$", "αβγ", True),
        (r"^\PL$", "1", True),
        (r"(?i)straße", "STRAßE", True),
        (r"^.$", "☺", True),  # a character, not a byte
        (r"\QC:\Cache\E", "C:\\Cache", True),  # \C inside \Q...\E is two characters
        (r"^(?U)(a+)b$", "aaab", True),
        ("é", "\udce9", False),  # a lone surrogate (from a JSON body) is no character
    ],
)
def test_go_semantics(pattern: str, text: str, matches: bool) -> None:
    assert compile_go_regex(pattern).search(text) is matches


@pytest.mark.parametrize(
    ("pattern", "miss", "hit"),
    [
        # Exponential for a backtracking engine:
        (r"^(a+)+$", "a" * 5000 + "!", "a" * 5000),
        (r"(x+x+)+y", "x" * 5000, "x" * 5000 + "y"),
        # Polynomial: a 64 KB statement.
        (
            r".*SELECT.*FROM.*orders.*WHERE",
            "SELECT a FROM b " * 4096,
            "SELECT a FROM b " * 4096 + "orders WHERE",
        ),
    ],
)
def test_patterns_that_backtracking_engines_choke_on_are_answered(
    pattern: str, miss: str, hit: str
) -> None:
    """Python's re took 0.7 s on the first at 24 characters and 46 s on the last at 4 KB; each
    doubling of those lengths multiplies it many times over. RE2 answers in linear time."""
    compiled = compile_go_regex(pattern)
    assert compiled.search(miss) is False
    assert compiled.search(hit) is True


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(?=a)", "invalid perl operator: (?="),
        (r"(?!a)", "invalid perl operator: (?!"),
        (r"(?<=a)b", "invalid perl operator: (?<="),
        (r"(?>a)", "invalid perl operator: (?>"),
        (r"(a)\1", r"invalid escape sequence: \1"),
        (r"(?P<n>a)(?P=n)", "invalid perl operator: (?P"),
        (r"\Z", r"invalid escape sequence: \Z"),
        (r"\e", r"invalid escape sequence: \e"),
        (r"\C", r"invalid escape sequence: \C"),  # RE2 takes it (any byte); Go does not
        (r"a\\\C", r"invalid escape sequence: \C"),
        (r"a{1001}", "invalid repetition size: {1001}"),
        (r"[[:alfa:]]", "invalid character class range: [:alfa:]"),
        (r"(a", "missing ): (a"),
        (r"a)", "unexpected ): a)"),
        (r"[a", "missing ]: [a"),
        ("a\\", "trailing \\"),
        (r"(?x)a", "invalid perl operator: (?x"),
        (r"*a", "no argument for repetition operator: *"),
        (r"a**", "bad repetition operator: **"),
    ],
)
def test_what_go_rejects_is_an_error(pattern: str, message: str) -> None:
    with pytest.raises(GoRegexError) as caught:
        compile_go_regex(pattern)
    assert str(caught.value) == message


def test_a_compiled_pattern_pickles_to_a_worker_process() -> None:
    copy = pickle.loads(pickle.dumps(compile_go_regex(r"^/api/v\d+/")))
    assert copy.pattern == r"^/api/v\d+/"
    assert copy.search("/api/v2/users") is True
    assert copy.search("/api/vx/users") is False


def test_an_escaped_backslash_before_c_is_a_backslash_and_a_c() -> None:
    assert compile_go_regex(r"a\\C").search("a\\C") is True
