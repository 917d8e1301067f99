"""Fixtures: a real store file in tmp_path, a writer on it with a hand-driven clock, a reader."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from refinery_py.store import StoreWriter, open_for_reading, open_for_writing


class Clock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "traces.db"


@pytest.fixture
def writer(store_path: Path, clock: Clock) -> Iterator[StoreWriter]:
    conn = open_for_writing(store_path)
    try:
        yield StoreWriter(conn, retention=86400.0, max_bytes=1 << 30, clock=clock)
    finally:
        conn.close()


@pytest.fixture
def reader(writer: StoreWriter, store_path: Path) -> Iterator[sqlite3.Connection]:
    conn = open_for_reading(store_path)
    try:
        yield conn
    finally:
        conn.close()
