"""`GET /api/v1/rules` and `POST /api/v1/rules/reload`: which rules run, and reloading them."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web


class RulesAdmin(Protocol):
    """What the node offers the API about its rules."""

    def status(self) -> dict[str, Any]:
        """The active rules: source, digest, load time, targets and their samplers."""
        ...

    def reload(self, reason: str) -> dict[str, Any]:
        """Load the rules file again; the outcome (`applied`, `unchanged`, `rejected`)."""
        ...


def rules_routes(admin: RulesAdmin) -> list[web.RouteDef]:
    async def status(_: web.Request) -> web.Response:
        return web.json_response(admin.status())

    async def reload(_: web.Request) -> web.Response:
        outcome = admin.reload("api")
        code = {"applied": 200, "unchanged": 200, "rejected": 422}.get(outcome["outcome"], 409)
        return web.json_response(outcome, status=code)

    return [web.get("/api/v1/rules", status), web.post("/api/v1/rules/reload", reload)]
