"""bench.store_bench loads a real store and queries it over the real API (it once handed the
routes a StoreReader where they take QueryHandlers, and stopped before measuring anything)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_store_bench_loads_and_queries_every_kind(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.store_bench",
            "--traces=400",
            "--templates=10",
            f"--dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "load: 400 traces" in done.stdout
    rows = {line.split("  ")[0]: line.split() for line in done.stdout.splitlines()}
    for query in ("list first page", "list errors", "trace with spans", "summary 24h"):
        assert query in rows, done.stdout
        assert int(rows[query][-4]) > 0  # runs
    assert (tmp_path / "traces.db").stat().st_size > 0
