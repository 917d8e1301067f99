"""`/alive`, `/ready` and `/metrics`: what orchestrators and Prometheus poll."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest


def health_routes(
    registry: CollectorRegistry, is_ready: Callable[[], tuple[bool, str]]
) -> list[web.RouteDef]:
    """Routes for liveness, readiness (with the reason when not ready) and Prometheus metrics."""

    async def alive(_: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def ready(_: web.Request) -> web.Response:
        ok, reason = is_ready()
        return web.json_response({"ready": ok, "reason": reason}, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return [
        web.get("/alive", alive),
        web.get("/ready", ready),
        web.get("/metrics", metrics),
    ]
