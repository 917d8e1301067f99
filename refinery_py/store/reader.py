"""Running store queries off the event loop, on a few threads with a connection each."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from refinery_py.store.schema import open_for_reading

T = TypeVar("T")

READER_THREADS = 2
"""Queries that run at once. SQLite releases the GIL while it works, so two threads use both
cores of a small machine without starving the event loop; more would only queue in the kernel."""


class StoreReader:
    """Runs functions of a read-only connection to the store on its own thread pool.

    Each pool thread opens its connection on first use (WAL: readers never block the writer, and
    each query sees the last committed batch). `close` waits for running queries, then closes
    every connection.
    """

    def __init__(self, path: str | Path, threads: int = READER_THREADS) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="store-reader")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    async def run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """`query(connection)` on a reader thread. Raises `StoreUnavailable` when the store
        cannot be opened, RuntimeError after `close`."""
        if self._closed:
            raise RuntimeError("the store reader is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, query)

    def run_sync(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """`query(connection)` on the calling thread's connection (for command-line use)."""
        return self._call(query)

    def _call(self, query: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_for_reading(self.path)
            with self._lock:
                if self._closed:
                    conn.close()
                    raise RuntimeError("the store reader is closed")
                self._connections.append(conn)
            self._local.conn = conn
        return query(conn)

    def close(self) -> None:
        """Wait for running queries, then close every connection. Blocks; idempotent."""
        self._executor.shutdown(wait=True)
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    async def aclose(self) -> None:
        """`close` without blocking the event loop."""
        await asyncio.to_thread(self.close)
