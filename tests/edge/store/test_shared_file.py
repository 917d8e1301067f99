"""Several processes open one new store file at once, as a node's workers do at start-up."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

from refinery_py.store import StoreUnavailable, open_for_writing

PROCESSES = 6
FILES = 12


def _open_at_once(path: str, barrier: Barrier) -> str:
    barrier.wait()
    try:
        open_for_writing(path).close()
    except StoreUnavailable as exc:
        return str(exc)
    return ""


def test_workers_opening_a_new_store_together_all_start(tmp_path: Path) -> None:
    # Each file is new; all processes open it at the same moment. None may see another's
    # half-made schema (tables without the version that marks them as a store's) and refuse it.
    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        manager = context.Manager()
        for number in range(FILES):
            barrier = manager.Barrier(PROCESSES)
            path = str(tmp_path / f"store-{number}" / "traces.db")
            results = pool.starmap(_open_at_once, [(path, barrier)] * PROCESSES)
            assert results == [""] * PROCESSES, f"file {number}: {results}"
        manager.shutdown()
