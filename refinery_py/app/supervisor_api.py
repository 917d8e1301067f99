"""The node's API when it runs as several workers: one address, answers from the workers.

`/metrics` merges every worker's metrics (each sample labelled `worker`) with the supervisor's
own; `/ready` is ready when every worker is; a trace lookup goes to the worker that owns the
trace (its decision cache); a rules reload goes to every worker; other queries go to any live
worker (they share the store file).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from refinery_py.api.auth import bearer_token_auth
from refinery_py.api.server import ApiServer
from refinery_py.cluster.ownership import Ownership
from refinery_py.config.settings import Settings
from refinery_py.model.addresses import split_host_port

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from refinery_py.app.workers import Supervisor

_HOP_HEADERS = {"Authorization", "Content-Type", "Accept"}


class _Merged(Collector):
    """The families parsed from the workers' expositions, for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


class SupervisorApi:
    """Serves `listen.api` for a multi-worker node."""

    def __init__(
        self, settings: Settings, supervisor: Supervisor, session: aiohttp.ClientSession
    ) -> None:
        self.host, port = split_host_port(settings.listen.api)
        self._supervisor = supervisor
        self._session = session
        self._ownership = Ownership(supervisor.members, 0)
        self.draining = False
        self._registry = CollectorRegistry()
        Gauge(
            "refinery_workers",
            "Worker processes of this node that are alive.",
            registry=self._registry,
        ).set_function(supervisor.alive)
        Gauge(
            "refinery_worker_restarts",
            "Times a worker process exited unexpectedly and was restarted.",
            registry=self._registry,
        ).set_function(lambda: supervisor.restarts)
        token = settings.api.token
        self._server = ApiServer(
            self.host,
            port,
            [
                web.get("/alive", self._alive),
                web.get("/ready", self._ready),
                web.get("/metrics", self._metrics),
                web.get("/api/v1/traces/{trace_id}", self._trace),
                web.post("/api/v1/rules/reload", self._reload),
                web.route("*", "/api/{tail:.*}", self._any_worker),
            ],
            middlewares=[bearer_token_auth(token)] if token else [],
        )

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    # ---- health and metrics ------------------------------------------------------------

    async def _alive(self, _: web.Request) -> web.Response:
        return web.json_response({"alive": True, "workers": self._supervisor.alive()})

    async def _ready(self, _: web.Request) -> web.Response:
        supervisor = self._supervisor
        states = await asyncio.gather(
            *(supervisor.worker_state(self._session, i) for i in range(len(supervisor.apis)))
        )
        ready = not self.draining and all(state == "serving" for state in states)
        reason = "shutting down" if self.draining else "serving" if ready else "starting"
        body = {"ready": ready, "reason": reason, "workers": list(states)}
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        texts = await asyncio.gather(*(self._fetch_metrics(api) for api in self._supervisor.apis))
        families: dict[str, Metric] = {}
        for worker, text in enumerate(texts):
            for family in text_string_to_metric_families(text):
                relabeled = [
                    Sample(s.name, {**s.labels, "worker": str(worker)}, s.value, s.timestamp)
                    for s in family.samples
                ]
                merged = families.get(family.name)
                if merged is None:
                    family.samples = relabeled
                    families[family.name] = family
                else:
                    merged.samples.extend(relabeled)
        registry = CollectorRegistry()
        registry.register(_Merged(list(families.values())))
        body = generate_latest(registry) + generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _fetch_metrics(self, api: str) -> str:
        try:
            async with self._session.get(f"http://{api}/metrics") as response:
                return await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return ""  # a worker being restarted: its series are absent for this scrape

    # ---- the query API, answered by workers ------------------------------------------------

    async def _trace(self, request: web.Request) -> web.StreamResponse:
        try:
            owner = self._ownership.owner_of(bytes.fromhex(request.match_info["trace_id"]))
        except ValueError:
            owner = 0  # the worker answers the 400 for a malformed ID
        return await self._proxy(request, [owner])

    async def _reload(self, request: web.Request) -> web.StreamResponse:
        answers = await asyncio.gather(
            *(self._send(request, index) for index in range(len(self._supervisor.apis)))
        )
        status, body = max(answers, key=lambda answer: answer[0])
        return web.Response(status=status, body=body, content_type="application/json")

    async def _any_worker(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, list(range(len(self._supervisor.apis))))

    async def _proxy(self, request: web.Request, candidates: list[int]) -> web.StreamResponse:
        for index in candidates:
            status, body = await self._send(request, index)
            if status != 502:
                return web.Response(status=status, body=body, content_type="application/json")
        return web.json_response({"error": "no worker could answer; retry"}, status=503)

    async def _send(self, request: web.Request, index: int) -> tuple[int, bytes]:
        url = f"http://{self._supervisor.apis[index]}{request.rel_url}"
        headers: dict[str, Any] = {k: v for k, v in request.headers.items() if k in _HOP_HEADERS}
        data = await request.read() if request.can_read_body else None
        try:
            async with self._session.request(
                request.method, url, headers=headers, data=data
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError):
            return 502, b'{"error": "worker unreachable"}'
