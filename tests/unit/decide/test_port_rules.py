"""Refinery's TestRules and TestRulesWithNestedFields (sample/rules_test.go), ported."""

from __future__ import annotations

import pytest

from refinery_py.config.rules_spec import (
    NUM_DESCENDANTS,
)

from .fakes import cond
from .port import Port, check, child, go_root, r

TEST_RULES = [
    Port(
        "int64equals", (r("int64equals", cond("test", "=", 1), sample_rate=10),), [{"test": 1}], 10
    ),
    Port(
        "int64greaterthan",
        (r("int64greaterthan", cond("test", ">", 1), sample_rate=10),),
        [{"test": 2}],
        10,
    ),
    Port(
        "int64lessthan",
        (r("int64lessthan", cond("test", "<", 2), sample_rate=10),),
        [{"test": 1}],
        10,
    ),
    Port(
        "int64float64lessthan",
        (r("int64float64lessthan", cond("test", "<", 2.2), sample_rate=10),),
        [{"test": 1}],
        10,
    ),
    Port(
        "rule that wont be hit",
        (r("rule that wont be hit", cond("test", ">", 2.2)), r("fallback", sample_rate=10)),
        [{"test": 1}],
        10,
        reason="fallback",
    ),
    Port(
        "multiple matches",
        (
            r(
                "multiple matches",
                cond("test", "<=", 2.2),
                cond("test", ">=", 2.2),
                cond("test_two", "=", True),
                sample_rate=10,
            ),
        ),
        [{"test": 2.2, "test_two": False}, {"test_two": True}],
        10,
    ),
    Port("drop", (r("drop", cond("test", ">", 2), drop=True),), [{"test": 3.0}], 0, dropped=True),
    Port("drop everything", (r("drop everything", drop=True),), [{"test": 1}], 0, dropped=True),
    Port(
        "test multiple rules must all be matched",
        (
            r(
                "test multiple rules must all be matched",
                cond("first", "=", 1),
                cond("second", "=", 2),
                sample_rate=4,
            ),
        ),
        [{"first": 1}, {"first": 1}],
        1,
        reason="no rule matched",
    ),
    Port(
        "not equal test",
        (r("not equal test", cond("first", "!=", 10), sample_rate=4),),
        [{"first": 9}],
        4,
    ),
    Port(
        "exists test",
        (r("exists test", cond("first", "exists"), sample_rate=4),),
        [{"first": 9}],
        4,
    ),
    Port(
        "not exists test",
        (r("not exists test", cond("first", "not-exists"), sample_rate=4),),
        [{"second": 9}],
        4,
    ),
    Port(
        "starts with test",
        (r("starts with test", cond("first", "starts-with", "honey"), sample_rate=4),),
        [{"first": "honeycomb"}],
        4,
    ),
    Port(
        "contains test",
        (r("contains test", cond("first", "contains", "eyco"), sample_rate=4),),
        [{"first": "honeycomb"}],
        4,
    ),
    Port(
        "does not contain test",
        (r("does not contain test", cond("first", "does-not-contain", "noteyco"), sample_rate=4),),
        [{"first": "honeycomb"}],
        4,
    ),
    Port(
        "YAMLintgeaterthan",
        (r("YAMLintgeaterthan", cond("test", ">", 1), sample_rate=10),),
        [{"test": 2}],
        10,
    ),
    Port(
        "Check that root span is missing",
        (r("Check that root span is missing", cond(None, "has-root-span", False), drop=True),),
        [child("654321", test=2), child("754321", test=3)],
        0,
        dropped=True,
    ),
    Port(
        "Check that root span is present",
        (r("Check that root span is present", cond(None, "has-root-span", True), sample_rate=99),),
        [
            {"trace.trace_id": "12345", "trace.span_id": "54321", "meta.span_count": 2, "test": 2},
            child("654321", test=2),
            child("754321", test=3),
        ],
        99,
    ),
    Port(
        "Search multiple fields (success)",
        (r("Search multiple fields (success)", cond(["test", "test2"], "=", 17), sample_rate=10),),
        [{"test2": 17}],
        10,
    ),
    Port(
        "Search multiple fields (fails)",
        (r("Search multiple fields (fails)", cond(["test", "test2"], "=", 17), sample_rate=10),),
        [{"test2": 16}],
        1,
        reason="no rule matched",
    ),
    Port(
        "Multiple fields, multiple values (fails)",
        (
            r(
                "Multiple fields, multiple values (fails)",
                cond(["test", "test2"], "=", 17),
                sample_rate=10,
            ),
        ),
        [{"test": 2, "test2": 17}],
        1,
        reason="no rule matched",
    ),
    Port(
        "Check that the number of descendants is greater than 3",
        (
            r(
                "Check that the number of descendants is greater than 3",
                cond(NUM_DESCENDANTS, ">", 3, "int"),
                sample_rate=1,
                drop=True,
            ),
        ),
        [
            child("54322", "54321", **{"meta.span_count": 2}),
            child("654321", "54322"),
            child("754321", "54322"),
            child("754321", "54322"),
        ],
        0,  # Refinery reports the rule's SampleRate (1) with a Drop
        dropped=True,
    ),
    Port(
        "Check that the number of descendants is less than 3",
        (
            r(
                "Check that the number of descendants is less than 3",
                cond(NUM_DESCENDANTS, "<", 3),
                sample_rate=1,
            ),
        ),
        [
            child("54322", "54321", **{"meta.span_count": 2}),
            child("654321", "54322"),
            child("754321", "54322"),
            child("754321", "54322"),
        ],
        1,
        reason="no rule matched",
    ),
]

NESTED = [
    Port(
        "nested field",
        (r("nested field", cond("test.test1", "=", "a"), sample_rate=10),),
        [{"test": '{"test1": "a"}'}],
        10,
        nested=True,
    ),
    Port(
        "field not nested",
        (r("field not nested", cond("test.test1", "=", "a"), sample_rate=10),),
        [{"test.test1": "a"}],
        10,
        nested=True,
    ),
    Port(
        "not exists test",
        (r("not exists test", cond("test.test1", "not-exists"), sample_rate=4),),
        [{"test": '{"test2": "b"}'}],
        4,
        nested=True,
    ),
    Port(
        "do not check nested",
        (r("do not check nested", cond("test.test1", "exists"), sample_rate=4),),
        [{"test": '{"test1": "a"}'}],
        1,
        reason="no rule matched",
    ),
    Port(
        "nested fields",
        (r("nested fields", cond(["test.test1", "test.test2"], "=", "a"), sample_rate=10),),
        [{"test": '{"test2": "a"}'}],
        10,
        nested=True,
    ),
]


@pytest.mark.parametrize("port", TEST_RULES, ids=lambda p: p.name)
def test_rules(port: Port) -> None:
    check(port, go_root(port.spans))


@pytest.mark.parametrize("port", NESTED, ids=lambda p: p.name)
def test_rules_with_nested_fields(port: Port) -> None:
    check(port, None)
