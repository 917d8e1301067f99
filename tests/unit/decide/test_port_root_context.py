"""Refinery's TestRulesRootSpanContext (sample/rules_test.go), ported."""

from __future__ import annotations

import pytest

from .fakes import cond
from .port import Port, check, r

ROOT_SPAN_CONTEXT = [
    Port(
        "root span matches",
        (r("root span matches", cond("root.test", "exists"), sample_rate=10),),
        [{"test": "foo"}, {"http.status_code": "200"}, {"test1": 1, "test2": 2.2, "test3": "foo"}],
        10,
        root=0,
    ),
    Port(
        "root prefix condition matches, others don't",
        (
            r(
                "root prefix condition matches, others don't",
                cond("root.test", "exists"),
                cond("anotherField", "=", "bar", "string"),
                sample_rate=10,
            ),
        ),
        [{"test": "foo"}, {"http.status_code": "200"}, {"test1": 1, "test2": 2.2, "test3": "foo"}],
        1,
        reason="no rule matched",
        root=0,
    ),
    Port(
        "all conditions match",
        (
            r(
                "all conditions match",
                cond("root.test", "exists"),
                cond("anotherField", ">", 1.0),
                sample_rate=10,
            ),
        ),
        [
            {"test": "foo", "anotherField": 3.5},
            {"http.status_code": "200", "anotherField": 1.1},
            {"test1": 1, "test2": 2.2, "test3": "foo"},
        ],
        10,
        root=0,
    ),
    Port(
        "two root conditions, only one matches",
        (
            r(
                "two root conditions, only one matches",
                cond("root.test", "exists"),
                cond("root.nope", "exists"),
                cond("anotherField", "<", 100),
                sample_rate=10,
            ),
        ),
        [
            {"test": "foo", "anotherField": 50},
            {"http.status_code": "200", "anotherField": 10},
            {"test1": 1, "test2": 2.2, "test3": "foo"},
        ],
        1,
        reason="no rule matched",
        root=0,
    ),
    Port(
        "two root conditions, only one matches, reversed",
        (
            r(
                "two root conditions, only one matches, reversed",
                cond("anotherField", "<", 100),
                cond("root.test", "exists"),
                cond("root.nope", "exists"),
                sample_rate=10,
            ),
        ),
        [
            {"test": "foo", "anotherField": 50},
            {"http.status_code": "200", "anotherField": 10},
            {"test1": 1, "test2": 2.2, "test3": "foo"},
        ],
        1,
        reason="no rule matched",
        root=0,
    ),
    Port(
        "span matches, root does not match",
        (
            r(
                "span matches, root does not match",
                cond("root.test", "contains", "foo", "string"),
                sample_rate=10,
            ),
        ),
        [{"test": "nope"}, {"http.status_code": "200"}, {"test": "foo", "test1": 1, "test2": 2.2}],
        1,
        reason="no rule matched",
        root=0,
    ),
    Port(
        "root does not match, spans do not match",
        (
            r(
                "root does not match, spans do not match",
                cond("root.test", "contains", "foo", "string"),
                sample_rate=10,
            ),
        ),
        [{"test": "nope"}, {"http.status_code": "200"}, {"test": "nope", "test1": 1, "test2": 2.2}],
        1,
        reason="no rule matched",
        root=0,
    ),
    Port(
        "root doesn't match, next span doesn't match, third span matches",
        (
            r(
                "root doesn't match, next span doesn't match, third span matches",
                cond(["http.status_code", "root.http.status_code"], "=", "500"),
                sample_rate=10,
            ),
        ),
        [{"test": "nope"}, {"http.status_code": "200"}, {"http.status_code": "500"}],
        10,
        root=0,
    ),
    Port(
        "root doesn't match, next span doesn't match, third span matches, reversed",
        (
            r(
                "root doesn't match, next span doesn't match, third span matches, reversed",
                cond(["root.http.status_code", "http.status_code"], "=", "500"),
                sample_rate=10,
            ),
        ),
        [{"test": "nope"}, {"http.status_code": "200"}, {"http.status_code": "500"}],
        10,
        root=0,
    ),
    Port(
        "no root span",
        (r("no root span", cond(["root.http.status_code"], "=", "500"), sample_rate=10),),
        [{"http.status_code": "200"}, {"http.status_code": "500"}],
        1,
        reason="no rule matched",
    ),
    Port(
        "no root span with multiple fields",
        (
            r(
                "no root span with multiple fields",
                cond(["root.foo", "foo"], "=", 100.01),
                sample_rate=10,
            ),
        ),
        [{"foo": 100.01}, {"foo": 99.1, "bar": 100.10}],
        10,
    ),
    Port(
        "no root span, checking other spans in trace",
        (
            r(
                "no root span, checking other spans in trace",
                cond(["root.foo", "foo"], "=", True),
                sample_rate=10,
            ),
        ),
        [{"foo": True}, {"foo": True}],
        10,
    ),
    Port(
        "NotExists/root span exists, rule uses has-root-span guard, field is missing",
        (
            r(
                "NotExists/root span exists, rule uses has-root-span guard, field is missing",
                cond(None, "has-root-span", True),
                cond("root.service.name", "not-exists"),
                sample_rate=2,
            ),
        ),
        [{"name.of.service": "is not service.name!"}, {"foo": True}],
        2,
        root=0,
    ),
    Port(
        "NotExists/root span exists, rule uses has-root-span guard, field is present",
        (
            r(
                "NotExists/root span exists, rule uses has-root-span guard, field is present",
                cond(None, "has-root-span", True),
                cond("root.service.name", "not-exists"),
                sample_rate=2,
            ),
        ),
        [{"service.name": "totally present"}, {"foo": True}],
        1,
        reason="no rule matched",
        root=0,
    ),
    Port(
        "NotExists/no root span, no has-root-span guard (not recommended!)",
        (
            r(
                "NotExists/no root span, no has-root-span guard (not recommended!)",
                cond("root.service.name", "not-exists"),
                sample_rate=2,
            ),
        ),
        [{"service.name": "no trace id on this test span, so it's not root"}, {"foo": True}],
        2,
    ),
]


@pytest.mark.parametrize("port", ROOT_SPAN_CONTEXT, ids=lambda p: p.name)
def test_rules_root_span_context(port: Port) -> None:
    check(port, port.root)
