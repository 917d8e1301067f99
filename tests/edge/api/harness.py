"""A real query API on a loopback port over a real store file, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from refinery_py.api.auth import bearer_token_auth
from refinery_py.api.health import health_routes
from refinery_py.api.query_routes import QueryHandlers, query_routes
from refinery_py.api.server import ApiServer
from refinery_py.assemble import DecisionCache
from refinery_py.store import StoreReader, StoreWriter, open_for_writing
from refinery_py.telemetry import Metrics
from tests.edge.store.builders import BASE_NS, TraceSpec, kept_trace

NOW = BASE_NS / 1e9 + 3600
"""The API's clock: an hour after the builders' base start time."""


@dataclass
class QueryApi:
    writer: StoreWriter | None
    decisions: DecisionCache
    session: aiohttp.ClientSession
    base_url: str

    def store(self, *specs: TraceSpec) -> None:
        assert self.writer is not None
        outcome = self.writer.write([kept_trace(spec) for spec in specs])
        assert outcome.inserted + outcome.appended == len(specs)

    async def get(self, path: str, params: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with self.session.get(self.base_url + path, params=params, headers=headers) as r:
            assert r.content_type == "application/json"
            return r.status, await r.json()

    async def ok(self, path: str, params: Any = None, token: str | None = None) -> Any:
        status, body = await self.get(path, params, token)
        assert status == 200, body
        return body


@asynccontextmanager
async def running_api(
    tmp_path: Path, *, token: str | None = None, with_store: bool = True
) -> AsyncIterator[QueryApi]:
    """Everything started, and everything closed on the way out."""
    path = tmp_path / "traces.db"
    conn = open_for_writing(path) if with_store else None
    reader = StoreReader(path) if with_store else None
    decisions = DecisionCache(120.0, 1 << 20)
    metrics = Metrics()
    server = ApiServer(
        "127.0.0.1",
        0,
        [
            *health_routes(metrics.registry, lambda: (True, "serving")),
            *query_routes(QueryHandlers(reader, decisions.get, clock=lambda: NOW)),
        ],
        middlewares=[bearer_token_auth(token)] if token else [],
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            writer = (
                StoreWriter(conn, retention=86400.0, max_bytes=1 << 30, clock=lambda: NOW)
                if conn is not None
                else None
            )
            yield QueryApi(writer, decisions, session, f"http://127.0.0.1:{server.port}")
    finally:
        await server.stop()
        if reader is not None:
            await reader.aclose()
        if conn is not None:
            conn.close()
