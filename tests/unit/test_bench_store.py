"""bench.store_bench loads a real store and queries it over the real API (it once handed the
routes a StoreReader where they take QueryHandlers, and stopped before measuring anything)."""

from __future__ import annotations

from pathlib import Path

from tests.bench_support import run_tool


def test_store_bench_loads_and_queries_every_kind(tmp_path: Path) -> None:
    done = run_tool("bench.store_bench", "--traces=400", "--templates=10", f"--dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    assert "load: 400 traces" in done.stdout
    rows = {line.split("  ")[0]: line.split() for line in done.stdout.splitlines()}
    for query in ("list first page", "list errors", "trace with spans", "summary 24h"):
        assert query in rows, done.stdout
        assert int(rows[query][-4]) > 0  # runs
    assert (tmp_path / "traces.db").stat().st_size > 0
