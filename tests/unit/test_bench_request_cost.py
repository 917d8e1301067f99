"""bench.request_cost: a short run against a real server measures both phases."""

from __future__ import annotations

import re
import sys

import pytest

from bench import request_cost


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_short_run_measures_fresh_and_late_requests(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], protocol: str
) -> None:
    argv = ["request_cost", "--workers", "1", "--requests", "200", "--connections", "2"]
    argv += ["--protocol", protocol]
    monkeypatch.setattr(sys, "argv", argv)
    request_cost.main()
    out = capsys.readouterr().out
    phases = re.findall(r"(fresh|late) +(\d+) µs per request.* ([\d,]+) export requests", out)
    assert [phase for phase, _, _ in phases] == ["fresh", "late"]
    for _, micros, _ in phases:
        assert int(micros) > 0
    assert int(phases[0][2].replace(",", "")) > 0, "kept traces were exported"
