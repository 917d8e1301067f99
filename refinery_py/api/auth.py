"""The optional bearer token (`api.token`) in front of everything but health and metrics."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from refinery_py.api.errors import Handler

OPEN_PATHS = frozenset({"/alive", "/ready", "/metrics"})
"""Paths orchestrators and Prometheus poll: never behind the token."""


def bearer_token_auth(token: str) -> Middleware:
    """A middleware answering 401 unless `Authorization: Bearer <token>` is sent.

    Everything except `OPEN_PATHS` is guarded, unknown paths included: listing what is open
    (rather than what is closed) means a route added later, or a path spelled to dodge a prefix
    check, cannot slip past. The comparison takes the same time whatever the guess.
    """
    if not token:
        raise ValueError("the API token must not be empty")
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return web.json_response(
                    {"error": "a valid bearer token is required (Authorization: Bearer TOKEN)"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="refinery_py"'},
                )
        return await handler(request)

    return require_token
