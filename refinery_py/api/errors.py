"""Every API error is JSON: `{"error": "message"}` with a 4xx/5xx status."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """Raised by handlers for a client-visible error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response({"error": exc.message}, status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status)
    except Exception:
        log.exception("API request %s %s failed", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


def with_json_errors(handler: Handler) -> Handler:
    """`handler` with the API's error handling, for serving it outside the API's application."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await json_errors(request, handler)

    return handle
