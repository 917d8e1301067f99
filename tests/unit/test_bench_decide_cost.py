"""bench.decide_cost runs on the views samplers are given (its dict view once lacked members
TraceView gained, and only running it showed it)."""

from __future__ import annotations

from tests.bench_support import run_tool


def test_decide_cost_runs_every_sampler_on_both_views() -> None:
    done = run_tool("bench.decide_cost", "--traces", "300", "--repeat", "1")
    assert done.returncode == 0, done.stderr
    assert "rates recomputed per window" in done.stdout
