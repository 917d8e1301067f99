"""The lints of `rules check`: each warning, with the exact line it points at."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from refinery_py.config.rules import read_rules

REPO = Path(__file__).resolve().parents[3]


def warnings(text: str) -> list[tuple[int, str]]:
    spec, found = read_rules(textwrap.dedent(text), "r.yaml")
    assert spec is not None, [str(p) for p in found]
    assert all(not problem.is_error for problem in found)
    return [(problem.line, problem.message) for problem in found]


def rules(body: str) -> str:
    """A rules file whose RulesBasedSampler rules start at line 6."""
    return (
        "RulesVersion: 2\nSamplers:\n  __default__:\n    RulesBasedSampler:\n      Rules:\n"
        + textwrap.indent(textwrap.dedent(body), "        ")
    )


@pytest.mark.parametrize("operator", ["!=", "not-exists", "does-not-contain", "not-in"])
def test_negative_operator_in_trace_scope(operator: str) -> None:
    value = "" if operator == "not-exists" else "Value: [a]" if operator == "not-in" else "Value: a"
    found = warnings(
        rules(
            f"""\
            - Name: not ok
              SampleRate: 5
              Conditions:
                - Field: http.status_code
                  Operator: "{operator}"
                  {value}
            """
        )
    )
    assert len(found) == 1
    line, message = found[0]
    assert line == 9
    assert f"`{operator}` in a trace-scope rule matches when ANY span" in message


def test_negative_operator_is_fine_in_span_scope_and_on_root_fields() -> None:
    assert (
        warnings(
            rules(
                """\
                - Name: span scope
                  Scope: span
                  SampleRate: 5
                  Conditions:
                    - Field: http.status_code
                      Operator: "!="
                      Value: 200
                - Name: root field
                  SampleRate: 5
                  Conditions:
                    - Field: root.http.status_code
                      Operator: "!="
                      Value: 200
                """
            )
        )
        == []
    )


def test_has_root_span_in_span_scope() -> None:
    found = warnings(
        rules(
            """\
            - Name: incomplete
              Scope: span
              Drop: true
              Conditions:
                - Operator: has-root-span
                  Value: false
            """
        )
    )
    assert found == [
        (
            10,
            "Samplers.__default__.RulesBasedSampler.Rules[0]: has-root-span cannot be "
            "evaluated with Scope: span; Refinery skips such a rule",
        )
    ]


def test_rules_after_a_condition_less_rule_are_never_reached() -> None:
    found = warnings(
        rules(
            """\
            - Name: everything
              SampleRate: 10
            - Name: errors
              SampleRate: 1
              Conditions:
                - Field: error
                  Operator: exists
            """
        )
    )
    assert found == [
        (
            8,
            "Samplers.__default__.RulesBasedSampler.Rules[1] is never reached: the rule at "
            "line 6 (everything) has no conditions and matches every trace",
        )
    ]


def test_drop_rule_shadowing_a_keep_rule_for_the_same_condition() -> None:
    found = warnings(
        rules(
            """\
            - Name: drop health
              Drop: true
              Conditions:
                - Field: http.route
                  Operator: starts-with
                  Value: /health
            - Name: keep failing health checks
              SampleRate: 1
              Conditions:
                - Field: http.route
                  Operator: starts-with
                  Value: /health
                - Field: error
                  Operator: exists
            """
        )
    )
    assert found == [
        (
            12,
            "Samplers.__default__.RulesBasedSampler.Rules[1] is never reached: the rule at "
            "line 6 (drop health) drops every trace this rule would match (same or fewer "
            "conditions)",
        )
    ]


def test_different_conditions_or_scopes_do_not_shadow() -> None:
    assert (
        warnings(
            rules(
                """\
                - Name: drop health
                  Drop: true
                  Conditions:
                    - Field: http.route
                      Operator: starts-with
                      Value: /health
                - Name: keep admin
                  SampleRate: 1
                  Conditions:
                    - Field: http.route
                      Operator: starts-with
                      Value: /admin
                - Name: span-scoped health
                  Scope: span
                  SampleRate: 1
                  Conditions:
                    - Field: http.route
                      Operator: starts-with
                      Value: /health
                """
            )
        )
        == []
    )


def test_rule_without_action_warns() -> None:
    found = warnings(
        rules(
            """\
            - Name: no action
              Conditions:
                - Field: error
                  Operator: exists
            """
        )
    )
    assert found == [
        (
            6,
            "Samplers.__default__.RulesBasedSampler.Rules[0] sets none of SampleRate, Drop or "
            "Sampler; matching traces are kept at rate 1 (Refinery would drop them)",
        )
    ]


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "refinery_py", "rules", "check", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_warnings_fail_only_with_strict(tmp_path: Path) -> None:
    path = tmp_path / "lint.yaml"
    path.write_text(
        rules(
            """\
            - Name: everything
              SampleRate: 10
            - Name: never
              SampleRate: 1
            """
        )
    )
    relaxed = run_check(str(path))
    assert relaxed.returncode == 0
    assert f"{path}:8: warning: " in relaxed.stdout
    strict = run_check("--strict", str(path))
    assert strict.returncode == 1


def test_cli_errors_fail_with_every_problem_listed(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "RulesVersion: 2\nSamplers:\n  prod:\n    DeterministicSamplr:\n      SampleRate: 1\n"
    )
    result = run_check(str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{path}:4: ") and "DeterministicSampler" in line for line in lines)
    assert any("__default__" in line for line in lines)


@pytest.mark.parametrize("path", sorted((REPO / "rules").rglob("*.yaml")), ids=str)
def test_every_shipped_rules_file_passes_strict(path: Path) -> None:
    result = run_check("--strict", str(path))
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "ok"
