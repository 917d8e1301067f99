"""Rules files in Refinery's v2 format: Refinery's own files load, mistakes come with lines."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from refinery_py.config.problems import ConfigError
from refinery_py.config.rules import check_rules_file, load_rules, parse_rules, read_rules
from refinery_py.config.rules_spec import (
    ConditionSpec,
    DeterministicSpec,
    DynamicSpec,
    EMADynamicSpec,
    EMAThroughputSpec,
    RulesBasedSpec,
    TotalThroughputSpec,
    WindowedThroughputSpec,
)

REFINERY_RULES = Path(__file__).parents[2] / "data" / "refinery-rules"
REFINERY_FILES = sorted(REFINERY_RULES.rglob("*.yaml"))


def problems(text: str) -> list[tuple[int, str]]:
    _, found = read_rules(textwrap.dedent(text), "r.yaml")
    return [(problem.line, problem.message) for problem in found]


HEAD = (
    "RulesVersion: 2\nSamplers:\n  __default__:\n    DeterministicSampler:\n      SampleRate: 1\n"
)


def with_default(body: str) -> str:
    """A valid file (`__default__` on lines 3-5) with more targets under Samplers from line 6."""
    return HEAD + textwrap.indent(textwrap.dedent(body), "  ")


def test_refinery_files_are_all_here() -> None:
    names = {path.relative_to(REFINERY_RULES).as_posix() for path in REFINERY_FILES}
    assert names == {
        "rules_complete.yaml",
        "test-rules/EMAThroughput_rules.yaml",
        "test-rules/TotalThroughput_rules.yaml",
        "test-rules/WindowedThroughput_rules.yaml",
        "test-rules/generated-minimal-rules.yaml",
        "test-rules/rules.yaml",
        "test-rules/smoke-test-rules.yaml",
    }


@pytest.mark.parametrize("path", REFINERY_FILES, ids=lambda path: path.name)
def test_refinery_rules_files_load_without_any_problem(path: Path) -> None:
    assert check_rules_file(path) == []
    spec = load_rules(path)
    assert spec.rules_version == 2
    assert "__default__" in spec.samplers
    assert spec.source == str(path)
    assert spec.digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_rules_complete_is_read_faithfully() -> None:
    spec = load_rules(REFINERY_RULES / "rules_complete.yaml")
    assert list(spec.samplers) == ["__default__", "env1", "env2", "env3", "env4", "env5"]
    assert spec.samplers["__default__"] == DeterministicSpec(sample_rate=1, line=25)
    env1 = spec.samplers["env1"]
    assert isinstance(env1, DynamicSpec)
    assert env1.clear_frequency == 60.0
    assert env1.field_list == ("request.method", "root.http.target", "response.status_code")
    assert env1.use_trace_length
    assert isinstance(spec.samplers["env2"], EMADynamicSpec)
    assert isinstance(spec.samplers["env5"], EMAThroughputSpec)

    rules_based = spec.samplers["env4"]
    assert isinstance(rules_based, RulesBasedSpec)
    names = [rule.name for rule in rules_based.rules]
    assert names == [
        "drop healthchecks",
        "drop everything from specific services",
        "keep slow 500 errors across semantic conventions",
        "dynamically sample 200 responses across semantic conventions",
        "sample traces originating from the users service",
        "drop incomplete traces from the buggy service",
        "default rule",
    ]
    drop, in_list, slow, dynamic, users, buggy, default = rules_based.rules
    assert drop.drop and drop.line == 63
    assert drop.conditions == (
        ConditionSpec(fields=("http.route",), operator="=", value="/health-check", line=66),
    )
    assert in_list.conditions[0].value == ("noisy-service", "overly-chatty-service17")
    assert slow.conditions[0].fields == ("http.status_code", "http.response.status_code")
    assert (slow.conditions[0].value, slow.conditions[0].datatype) == (500, "int")
    assert (slow.conditions[1].operator, slow.conditions[1].value) == (">=", 1000)
    assert dynamic.sampler == EMADynamicSpec(
        goal_sample_rate=15, field_list=("request.method", "request.route"), line=102
    )
    assert (users.scope, users.sample_rate) == ("span", 5)
    assert users.conditions[1].operator == "not-exists"
    assert buggy.conditions[0] == ConditionSpec(operator="has-root-span", value=False, line=120)
    assert (default.conditions, default.sample_rate) == ((), 10)
    assert hash(rules_based)  # specs are hashable, so unchanged samplers can be recognised


def test_throughput_samplers_and_defaults() -> None:
    spec = parse_rules(
        with_default(
            """\
              a:
                WindowedThroughputSampler:
                  GoalThroughputPerSec: 5
                  UpdateFrequency: 2s
              b:
                TotalThroughputSampler:
                  FieldList: [service.name]
              c:
                EMAThroughputSampler: {}
            """
        ),
        "r.yaml",
    )
    assert spec.samplers["a"] == WindowedThroughputSpec(
        goal_throughput_per_sec=5,
        update_frequency=2.0,  # type: ignore[arg-type]
        line=8,
    )
    assert spec.samplers["b"] == TotalThroughputSpec(field_list=("service.name",), line=12)
    assert spec.samplers["c"] == EMAThroughputSpec(line=14)


def test_samplers_keep_the_order_they_are_written_in() -> None:
    text = with_default(
        "  zeta:\n    DeterministicSampler: {SampleRate: 2}\n"
        "  alpha:\n    DeterministicSampler: {SampleRate: 3}\n"
    )
    assert list(parse_rules(text, "r.yaml").samplers) == ["__default__", "zeta", "alpha"]


def test_digest_and_source() -> None:
    text = with_default("")
    spec = parse_rules(text, "rules/x.yaml")
    assert spec.source == "rules/x.yaml"
    assert spec.digest == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [(1, "the rules file is empty; it needs RulesVersion: 2 and Samplers")]),
        ("- a\n", [(1, "a rules file is a mapping, found a list")]),
        (
            "Samplers:\n  __default__:\n    DeterministicSampler: {SampleRate: 1}\n",
            [(1, "missing required key RulesVersion at the top level (it must be 2)")],
        ),
        ("RulesVersion: 2\n", [(1, "missing required key Samplers at the top level")]),
        (
            "RulesVersion: 3\nSamplers:\n  __default__:\n    DeterministicSampler: {}\n",
            [
                (1, "RulesVersion must be 2, found 3"),
                (4, "missing required key SampleRate in Samplers.__default__.DeterministicSampler"),
            ],
        ),
        (
            "RulesVersion: two\nSamplers: {}\n",
            [
                (1, "RulesVersion must be 2, found the string 'two'"),
                (2, "Samplers must include a __default__ sampler, used for every other target"),
            ],
        ),
        (
            "RulesVersion: 2\nSamplers: [a]\n",
            [(2, "Samplers must be a mapping from target name to sampler, found a list")],
        ),
    ],
)
def test_file_level_problems(text: str, expected: list[tuple[int, str]]) -> None:
    assert problems(text) == expected


def test_version_1_files_must_be_converted() -> None:
    [(line, message)] = problems(
        "RulesVersion: 1\nSamplers:\n  __default__:\n    DeterministicSampler: {SampleRate: 1}\n"
    )
    assert line == 1
    assert message.startswith("RulesVersion 1 files are not read; convert it to version 2")
    assert "Refinery's `convert` tool" in message


def test_a_v1_style_file_gets_one_message_not_one_per_section() -> None:
    [(line, message)] = problems(
        "Sampler: DeterministicSampler\nSampleRate: 1\ndataset1:\n  Sampler: DynamicSampler\n"
    )
    assert line == 1
    assert "not a version 2 rules file" in message
    assert "`convert` tool" in message


def test_unknown_top_level_key() -> None:
    assert problems(HEAD + "Sampler: {}\n") == [
        (6, "unknown key Sampler at the top level; did you mean Samplers?")
    ]


ALL_TYPES = (
    "DeterministicSampler, RulesBasedSampler, DynamicSampler, EMADynamicSampler, "
    "EMAThroughputSampler, WindowedThroughputSampler, TotalThroughputSampler"
)
SAMPLER_MISTAKES = [
    (
        "env:\n  DynamicSamplr: {SampleRate: 2}",
        7,
        "unknown sampler type DynamicSamplr in Samplers.env; did you mean DynamicSampler?",
    ),
    (
        "env:\n  deterministicsampler: {SampleRate: 2}",
        7,
        "unknown sampler type deterministicsampler in Samplers.env; "
        "did you mean DeterministicSampler?",
    ),
    ("env:", 6, f"Samplers.env names no sampler; use one of {ALL_TYPES}"),
    ("env: {}", 6, f"Samplers.env names no sampler; use one of {ALL_TYPES}"),
    (
        "env:\n  DeterministicSampler: {SampleRate: 2}\n  DynamicSampler: {FieldList: [a]}",
        8,
        "Samplers.env names two sampler types, DeterministicSampler (line 7) and "
        "DynamicSampler; use exactly one",
    ),
    (
        "env: DeterministicSampler",
        6,
        "Samplers.env must be a mapping with one sampler type, found the string "
        "'DeterministicSampler'",
    ),
    (
        "env:\n  DeterministicSampler:\n    samplerate: 5",
        8,
        "unknown key samplerate in Samplers.env.DeterministicSampler; did you mean SampleRate?",
    ),
    (
        "env:\n  DeterministicSampler:\n    SampleRate: 0",
        8,
        "Samplers.env.DeterministicSampler.SampleRate must be at least 1, found 0",
    ),
    (
        "env:\n  DynamicSampler:\n    SampleRate: 5",
        7,
        "missing required key FieldList in Samplers.env.DynamicSampler",
    ),
    (
        "env:\n  DynamicSampler:\n    SampleRate: 5\n    FieldList: service.name",
        9,
        "Samplers.env.DynamicSampler.FieldList must be a list of strings, "
        "found the string 'service.name'",
    ),
    (
        "env:\n  EMADynamicSampler:\n    FieldList: [a]\n    Weight: 1.5",
        9,
        "Samplers.env.EMADynamicSampler.Weight must be at most 1, found 1.5",
    ),
    (
        "env:\n  EMAThroughputSampler:\n    AdjustmentInterval: 5 minutes",
        8,
        "Samplers.env.EMAThroughputSampler.AdjustmentInterval: '5 minutes' is not a duration; "
        "write it like 500ms, 2s, 1m30s or 1h",
    ),
    (
        "env:\n  WindowedThroughputSampler:\n    UpdateFrequency: 0s",
        8,
        "Samplers.env.WindowedThroughputSampler.UpdateFrequency must be greater than 0s, found 0s",
    ),
    (
        "env:\n  TotalThroughputSampler:\n    FieldList: [a]\n    GoalThroughputPerSec: 0",
        9,
        "Samplers.env.TotalThroughputSampler.GoalThroughputPerSec must be at least 1, found 0",
    ),
    (
        "__default__:\n  DeterministicSampler: {SampleRate: 2}",
        6,
        "Samplers.__default__ is given twice (first at line 3)",
    ),
]


@pytest.mark.parametrize(("body", "line", "message"), SAMPLER_MISTAKES)
def test_sampler_problems(body: str, line: int, message: str) -> None:
    assert problems(with_default(body + "\n")) == [(line, message)]


def test_three_independent_mistakes_give_three_problems() -> None:
    assert problems(
        """\
        RulesVersion: 2
        Samplers:
          __default__:
            DeterministicSampler:
              SampleRate: 0
          env1:
            EMADynamicSampler:
              FieldList: [a]
              Wieght: 0.5
          env2:
            RulesBasedSampler:
              Rules:
                - Name: errors
                  SampleRate: 1
                  Conditions:
                    - Field: error
                      Operator: eq
                      Value: true
        """
    ) == [
        (5, "Samplers.__default__.DeterministicSampler.SampleRate must be at least 1, found 0"),
        (9, "unknown key Wieght in Samplers.env1.EMADynamicSampler; did you mean Weight?"),
        (
            17,
            "Samplers.env2.RulesBasedSampler.Rules[0].Conditions[0].Operator must be one of =, "
            "!=, >, <, >=, <=, starts-with, contains, does-not-contain, exists, not-exists, "
            "has-root-span, matches, in, not-in; found 'eq'",
        ),
    ]


def test_parse_rules_raises_config_error_listing_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules("RulesVersion: 2\nSamplers:\n  env: {}\n", "r.yaml")
    assert len(caught.value.problems) == 2
    assert str(caught.value).splitlines()[0] == (
        "r.yaml:2: Samplers must include a __default__ sampler, used for every other target"
    )


def test_load_rules_and_check_rules_file_read_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    [problem] = check_rules_file(missing)
    assert str(problem) == f"{missing}: cannot read the rules file: No such file or directory"
    with pytest.raises(ConfigError):
        load_rules(missing)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"RulesVersion: 2\nSamplers: \xff\n")
    assert [(p.line, p.message) for p in check_rules_file(binary)] == [
        (2, "the rules file is not valid UTF-8")
    ]
    broken = tmp_path / "broken.yaml"
    broken.write_text("RulesVersion: 2\nSamplers:\n  - [\n", encoding="utf-8")
    [problem] = check_rules_file(broken)
    assert problem.line == 4
    assert problem.message.startswith("YAML syntax error")


def test_warnings_do_not_stop_loading() -> None:
    text = with_default(
        """\
          env:
            RulesBasedSampler:
              Rules:
                - Name: catch all
                  SampleRate: 2
                - Name: never reached
                  Drop: true
                  Conditions:
                    - Field: error
                      Operator: exists
        """
    )
    spec, found = read_rules(text, "r.yaml")
    assert spec is not None
    assert [(problem.line, problem.severity) for problem in found] == [(11, "warning")]
    assert found[0].message == (
        "Samplers.env.RulesBasedSampler.Rules[1] is never reached: the rule at line 9 "
        "(catch all) has no conditions and matches every trace"
    )
