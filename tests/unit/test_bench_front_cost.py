"""bench.front_cost: a short run measures one pipeline and the pipelines behind a front alike."""

from __future__ import annotations

import logging
import re
import sys

import pytest

from bench import front_cost


def test_a_short_run_measures_both_configurations(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["front_cost", "--traces", "80", "--rounds", "2", "--workers", "3"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(front_cost, "tune_allocator", lambda: None)  # not the test process's
    logger = logging.getLogger("refinery_py")
    level = logger.level
    front_cost.main()  # each run asserts that every trace it was fed was decided
    assert logger.level == level, "the bench's quiet logging must not outlive it"
    out = capsys.readouterr().out
    rounds = re.findall(r"round (\d) (one pipeline|3 behind a front): (\d+\.\d{3}) CPU-s", out)
    assert [(number, label) for number, label, _ in rounds] == [
        ("1", "one pipeline"),
        ("1", "3 behind a front"),
        ("2", "one pipeline"),
        ("2", "3 behind a front"),
    ]
    assert all(float(cpu) > 0 for _, _, cpu in rounds)
    assert re.search(
        r"median: one pipeline \d\.\d{3}, 3 behind a front \d\.\d{3} \([+-]\d+%\)", out
    )
