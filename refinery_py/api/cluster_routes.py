"""`GET /api/v1/cluster`, and looking a trace up on any member: the owner is asked first.

A trace's spans, decision and stored copy live with the member that owns its trace ID, so a
lookup on another member asks the owner's peer door (`GET /peer/v1/traces/{id}`). If the owner
cannot answer or does not know the trace (it joined after the trace was decided, say), the
member looks at home, so a lookup never fails only because the owners moved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from refinery_py.api.errors import ApiError, Handler
from refinery_py.api.query_params import BadParameter, parse_trace_id
from refinery_py.cluster.forwarding import LOCAL
from refinery_py.cluster.link import UNIX_PREFIX, LinkTls, door_url

_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=2)


def cluster_routes(status: Callable[[], dict[str, Any]]) -> list[web.RouteDef]:
    """`GET /api/v1/cluster`: `{"self", "members", "source"}`."""

    async def cluster(_: web.Request) -> web.Response:
        return web.json_response(status())

    return [web.get("/api/v1/cluster", cluster)]


def owner_trace_lookup(
    local: Handler,
    destination: Callable[[bytes], str],
    secret: str | None,
    tls: LinkTls | None = None,
) -> Handler:
    """A trace lookup that asks the trace's owner (`destination` of its ID) before itself
    (over TLS with `tls`, unless the owner is a sibling worker)."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}

    async def trace(request: web.Request) -> web.StreamResponse:
        try:
            trace_id = parse_trace_id(request.match_info["trace_id"])
        except BadParameter as exc:
            raise ApiError(400, str(exc)) from None
        door = destination(trace_id)
        if door != LOCAL:
            found = await _ask(door, trace_id.hex(), headers, tls)
            if found is not None:
                return found
        return await local(request)

    return trace


async def _ask(
    door: str, trace_id: str, headers: dict[str, str], tls: LinkTls | None
) -> web.Response | None:
    """The owner's answer when it has the trace; None when it does not or cannot answer."""
    connector: aiohttp.BaseConnector | None = None
    if door.startswith(UNIX_PREFIX):
        connector = aiohttp.UnixConnector(path=door[len(UNIX_PREFIX) :])
        tls = None
    url = door_url(door, f"/peer/v1/traces/{trace_id}", tls)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as session,
            session.get(
                url,
                headers=headers,
                ssl=tls.context() if tls is not None else True,
                server_hostname=tls.server_name if tls is not None else None,
            ) as response,
        ):
            if response.status != 200:
                return None
            body = await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
    return web.Response(body=body, content_type="application/json")
