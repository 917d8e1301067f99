"""bench.decide_cost runs on the views samplers are given (its dict view once lacked members
TraceView gained, and only running it showed it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_decide_cost_runs_every_sampler_on_both_views() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.decide_cost", "--traces", "300", "--repeat", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "rates recomputed per window" in done.stdout
