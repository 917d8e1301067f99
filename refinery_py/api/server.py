"""The API server: one aiohttp application on `listen.api`, assembled from route groups."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from refinery_py.api.errors import json_errors


class ApiServer:
    """Serves the given routes; errors come back as `{"error": message}` JSON.

    `middlewares` (an API token check, say) run inside the JSON error handling, in order.
    """

    def __init__(
        self,
        host: str,
        port: int,
        routes: Iterable[web.RouteDef],
        middlewares: Iterable[Middleware] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.app = web.Application(middlewares=[json_errors, *middlewares])
        self.app.add_routes(list(routes))
        self._runner = web.AppRunner(self.app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # aiohttp exposes the bound socket only here
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self._runner.cleanup()
