"""The store as an exporter: offer never blocks, every span is counted, close flushes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from refinery_py.store import (
    StoreExporter,
    StoreReader,
    StoreUnavailable,
    TraceFilter,
    list_traces,
)
from refinery_py.telemetry import Metrics
from tests.edge.store.builders import TraceSpec, kept_trace, late_spans


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_offered_traces_are_written_and_counted(tmp_path: Path) -> None:
    metrics = Metrics()
    path = tmp_path / "nested" / "dir" / "traces.db"
    store = StoreExporter(path, metrics=metrics)
    await store.start()
    try:
        for n in range(1, 101):
            store.offer(kept_trace(TraceSpec(n, customer=f"c{n % 3}")))
        store.offer(late_spans(1, 2))
    finally:
        await store.close(10.0)
    assert sample(metrics, "refinery_export_spans_total", exporter="store", outcome="sent") == 302
    assert sample(metrics, "refinery_store_writes_total", kind="insert") == 100
    assert sample(metrics, "refinery_store_writes_total", kind="append") == 1
    assert sample(metrics, "refinery_store_rows") == 100
    assert sample(metrics, "refinery_export_queue_spans", exporter="store") == 0
    reader = StoreReader(path)
    try:
        page = await reader.run(lambda conn: list_traces(conn, TraceFilter(customer="c1")))
        assert len(page.traces) == 34
    finally:
        await reader.aclose()


async def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    metrics = Metrics()
    trace = kept_trace(TraceSpec(1))
    # Room for two traces; the writer is not started, so nothing drains the queue.
    store = StoreExporter(
        tmp_path / "traces.db", metrics=metrics, queue_max_bytes=2 * len(trace.payload)
    )
    for n in range(1, 6):
        store.offer(kept_trace(TraceSpec(n)))
    assert store.queued_bytes == 2 * len(trace.payload)
    assert (
        sample(
            metrics, "refinery_export_spans_total", exporter="store", outcome="dropped_queue_full"
        )
        == 9
    )
    assert sample(metrics, "refinery_store_dropped_traces_total", reason="queue_full") == 3
    await store.close(1.0)
    # Never started: what was queued is counted, not lost silently.
    assert (
        sample(metrics, "refinery_export_spans_total", exporter="store", outcome="dropped_shutdown")
        == 6
    )
    store.offer(kept_trace(TraceSpec(9)))
    assert sample(metrics, "refinery_store_dropped_traces_total", reason="shutdown") == 3


async def test_offer_returns_while_the_writer_is_stuck(tmp_path: Path) -> None:
    metrics = Metrics()
    path = tmp_path / "traces.db"
    store = StoreExporter(path, metrics=metrics)
    await store.start()
    # Another connection holds the write lock, so the writer thread waits inside its first
    # transaction; offer() must keep returning regardless.
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        for n in range(1, 51):
            store.offer(kept_trace(TraceSpec(n)))
        assert sample(metrics, "refinery_store_writes_total", kind="insert") == 0
        blocker.execute("COMMIT")
    finally:
        blocker.close()
        await store.close(30.0)
    assert sample(metrics, "refinery_store_writes_total", kind="insert") == 50


async def test_an_unusable_path_fails_start_with_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = StoreExporter(blocker / "traces.db", metrics=Metrics())
    with pytest.raises(StoreUnavailable, match="cannot open the store"):
        await store.start()
    await store.close(1.0)


async def test_retention_runs_on_its_own_while_the_store_is_idle(tmp_path: Path) -> None:
    metrics = Metrics()
    now = [1_790_000_000.0]
    store = StoreExporter(
        tmp_path / "traces.db",
        metrics=metrics,
        retention=60.0,
        retention_interval=0.01,
        clock=lambda: now[0],
    )
    await store.start()
    try:
        store.offer(kept_trace(TraceSpec(1)))
        await wait_for(lambda: sample(metrics, "refinery_store_rows") == 1)
        now[0] += 61
        await wait_for(
            lambda: sample(metrics, "refinery_store_retention_deletions_total", reason="age") == 1
        )
        assert sample(metrics, "refinery_store_rows") == 0
        assert sample(metrics, "refinery_store_bytes") > 0
    finally:
        await store.close(5.0)


async def wait_for(condition: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)
