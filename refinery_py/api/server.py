"""The API server: one aiohttp application on `listen.api`, assembled from route groups."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from refinery_py.api.errors import json_errors


class ApiServer:
    """Serves the given routes on `host:port` (or on a Unix socket at `unix_path`); errors
    come back as `{"error": message}` JSON.

    `middlewares` (an API token check, say) run inside the JSON error handling, in order. With
    `ssl_context` the TCP address speaks TLS (a Unix socket never does).
    """

    def __init__(
        self,
        host: str,
        port: int,
        routes: Iterable[web.RouteDef],
        middlewares: Iterable[Middleware] = (),
        unix_path: Path | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.ssl_context = ssl_context
        self.port = port
        self.unix_path = unix_path
        self.app = web.Application(middlewares=[json_errors, *middlewares])
        self.app.add_routes(list(routes))
        self._runner = web.AppRunner(self.app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        if self.unix_path is not None:
            self.unix_path.unlink(missing_ok=True)
            await web.UnixSite(self._runner, str(self.unix_path)).start()
            return
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        server = site._server  # aiohttp exposes the bound socket only here
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self._runner.cleanup()
