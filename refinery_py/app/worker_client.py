"""The supervisor's line to its workers: each worker's API on its Unix socket."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from refinery_py.app.role import api_socket
from refinery_py.cluster.membership import ClusterView

UNREACHABLE = "unreachable"
_TIMEOUT = aiohttp.ClientTimeout(total=10)


class WorkerClient:
    """HTTP to worker i's private API, one session (and Unix connector) per worker."""

    def __init__(self, private_dir: str, workers: int) -> None:
        self._paths = [str(api_socket(private_dir, i)) for i in range(workers)]
        self._sessions: dict[int, aiohttp.ClientSession] = {}

    def _session(self, index: int) -> aiohttp.ClientSession:
        session = self._sessions.get(index)
        if session is None or session.closed:
            session = self._sessions[index] = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self._paths[index]), timeout=_TIMEOUT
            )
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def request(
        self,
        index: int,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        json: Any = None,
    ) -> tuple[int, bytes]:
        """(status, body); 502 when the worker cannot be reached."""
        try:
            async with self._session(index).request(
                method, f"http://worker{path}", headers=headers, data=data, json=json
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return 502, b'{"error": "worker unreachable"}'

    async def _json(self, index: int, path: str) -> dict[str, Any] | None:
        status, body = await self.request(index, "GET", path)
        if status == 502:
            return None
        try:
            document = json.loads(body)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    async def state(self, index: int) -> str:
        """The worker's readiness reason ("serving", "intake stopped", ...) or "unreachable"."""
        document = await self._json(index, "/ready")
        return UNREACHABLE if document is None else str(document.get("reason", ""))

    async def peer_idle(self, index: int) -> float | None:
        """Seconds since the worker's peer door last got a request (None: no door, or gone)."""
        document = await self._json(index, "/internal/status")
        idle = None if document is None else document.get("peer_idle")
        return float(idle) if isinstance(idle, int | float) else None

    async def push_view(self, index: int, view: ClusterView) -> bool:
        status, _ = await self.request(
            index,
            "POST",
            "/internal/view",
            json={"nodes": list(view.nodes), "self": view.self_node, "source": view.source},
        )
        return status == 200

    async def metrics(self, index: int) -> str:
        status, body = await self.request(index, "GET", "/metrics")
        return body.decode() if status == 200 else ""
