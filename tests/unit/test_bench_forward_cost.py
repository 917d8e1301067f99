"""bench.forward_cost: a short run prints every step, and the spans it forwards arrive whole."""

from __future__ import annotations

import re
import sys

import pytest

from bench import forward_cost


def test_a_short_run_measures_every_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["forward_cost", "--traces", "60", "--repeat", "1"])
    monkeypatch.setattr(forward_cost, "tune_allocator", lambda: None)  # not the test process's
    forward_cost.main()  # the owner asserts that it keeps every span it was sent
    out = capsys.readouterr().out
    forwarded = re.search(r"(\d+) spans forwarded \((\d+)%\)", out)
    assert forwarded is not None and int(forwarded.group(1)) > 0
    assert 30 <= int(forwarded.group(2)) <= 70  # two workers own about half each
    for step in ("route and queue", "request bodies", "decode", "route at the owner"):
        assert re.search(rf"{step}.*\d\.\d{{3}} µs", out), step
    assert "added CPU-s per 100k spans" in out
