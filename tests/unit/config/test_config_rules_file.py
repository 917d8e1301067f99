"""A config's rules file: a missing one is never taken silently for "keep everything"."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from refinery_py.app.rules import KEEP_EVERYTHING, resolve_rules
from refinery_py.config.problems import ConfigError
from refinery_py.config.settings import check_config_file, load_settings

RULES = (
    "RulesVersion: 2\nSamplers:\n  __default__:\n    DeterministicSampler:\n      SampleRate: 3\n"
)


def test_a_missing_default_rules_file_is_a_loud_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "refinery.yaml"
    config.write_text("listen:\n  api: 127.0.0.1:0\n")
    (problem,) = check_config_file(config)
    assert problem.severity == "warning"
    assert str(tmp_path / "rules" / "default.yaml") in problem.message
    assert "KEPT" in problem.message
    with caplog.at_level(logging.WARNING):
        assert resolve_rules(load_settings(config), None) is KEEP_EVERYTHING
    assert any("KEPT" in record.getMessage() for record in caplog.records)


def test_a_named_rules_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "refinery.yaml"
    config.write_text("store:\n  path: null\nrules_file: missing.yaml\n")
    (problem,) = check_config_file(config)
    assert problem.severity == "error" and problem.line == 3
    assert str(tmp_path / "missing.yaml") in problem.message
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        resolve_rules(load_settings(config), None)


def test_a_rules_file_next_to_the_config_is_found(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(RULES)
    config = tmp_path / "refinery.yaml"
    config.write_text("rules_file: mine.yaml\n")
    assert check_config_file(config) == []
    assert resolve_rules(load_settings(config), None).digest


def test_null_keeps_everything_on_purpose(tmp_path: Path) -> None:
    config = tmp_path / "refinery.yaml"
    config.write_text("rules_file: null\n")
    assert check_config_file(config) == []
    assert resolve_rules(load_settings(config), None) is KEEP_EVERYTHING
