"""The node's API when it runs as several workers: one address, answers from the workers.

`/metrics` merges every worker's metrics (each sample labelled `worker`) with the supervisor's
own; `/ready` is ready when every worker is; a trace lookup goes to the worker that owns the
trace (which asks another node if that node owns it); a rules reload goes to every worker;
`/api/v1/cluster` is the supervisor's view; other queries go to any live worker (they share
the store file).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from refinery_py.api.auth import bearer_token_auth
from refinery_py.api.server import ApiServer
from refinery_py.cluster.membership import ClusterView
from refinery_py.cluster.ownership import Placement, worker_of
from refinery_py.config.settings import Settings
from refinery_py.model.addresses import join_host_port, split_host_port

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

    def __init__(self, settings: Settings, supervisor: Supervisor) -> None:
        self.host, port = split_host_port(settings.listen.api)
        self._supervisor = supervisor
        self._client = supervisor.client
        self._peer_name = join_host_port(*split_host_port(settings.listen.peer))
        self.serving = False
        self._registry = supervisor.registry
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
                web.get("/api/v1/cluster", self._cluster),
                web.get("/api/v1/traces/{trace_id}", self._trace),
                web.post("/api/v1/rules/reload", self._reload),
                web.route("*", "/api/{tail:.*}", self._any_worker),
            ],
            middlewares=[bearer_token_auth(token)] if token else [],
            ssl_context=supervisor.security.server_context("api"),
        )

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def address(self) -> str:
        return join_host_port(self.host, self.port)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    # ---- health and metrics ------------------------------------------------------------

    async def _alive(self, _: web.Request) -> web.Response:
        return web.json_response({"alive": True, "workers": self._supervisor.alive()})

    async def _ready(self, _: web.Request) -> web.Response:
        supervisor = self._supervisor
        states = await asyncio.gather(*(self._client.state(i) for i in range(supervisor.workers)))
        ready = self.serving and all(state == "serving" for state in states)
        if ready:
            reason = "serving"
        elif supervisor.stopping:
            reason = "shutting down"
        else:
            reason = "starting"
        body = {"ready": ready, "reason": reason, "workers": list(states)}
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        workers = range(self._supervisor.workers)
        scrapes = self._supervisor.worker_metrics
        lives = [scrapes.life(i) for i in workers]
        texts = await asyncio.gather(*(self._client.metrics(i) for i in workers))
        families: dict[str, Metric] = {}
        for worker, text in enumerate(texts):
            for family in scrapes.seen(worker, text, lives[worker]):
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

    async def _cluster(self, _: web.Request) -> web.Response:
        view = self._supervisor.view
        if view is None:
            view = ClusterView((self._peer_name,), self._peer_name, "single")
        return web.json_response(view.as_json())

    # ---- the query API, answered by workers ------------------------------------------------

    async def _trace(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, self._owner_first(request.match_info["trace_id"]))

    def _owner_first(self, trace_hex: str) -> list[int]:
        """Workers to ask, the one that owns the trace (or asks the owning node) first."""
        workers = self._supervisor.workers
        try:
            trace_id = bytes.fromhex(trace_hex)
        except ValueError:
            return [0]  # the worker answers the 400 for a malformed ID
        view = self._supervisor.view
        cluster = self._supervisor.cluster
        if view is not None and cluster is not None:
            placement = Placement(view.nodes, cluster.node, workers, 0)
            if placement.node_of(trace_id) not in ("", cluster.node):
                return [0]  # another node owns it: any worker asks that node
        owner = worker_of(trace_id, workers)
        return [owner, *(i for i in range(workers) if i != owner)]

    async def _reload(self, request: web.Request) -> web.StreamResponse:
        answers = await asyncio.gather(
            *(self._send(request, index) for index in range(self._supervisor.workers))
        )
        status, body = max(answers, key=lambda answer: answer[0])
        return web.Response(status=status, body=body, content_type="application/json")

    async def _any_worker(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, list(range(self._supervisor.workers)))

    async def _proxy(self, request: web.Request, candidates: list[int]) -> web.StreamResponse:
        last: tuple[int, bytes] | None = None
        for index in candidates:
            status, body = await self._send(request, index)
            if status not in (502, 404):
                return web.Response(status=status, body=body, content_type="application/json")
            if status == 404:
                last = (status, body)
        if last is not None:
            return web.Response(status=last[0], body=last[1], content_type="application/json")
        return web.json_response({"error": "no worker could answer; retry"}, status=503)

    async def _send(self, request: web.Request, index: int) -> tuple[int, bytes]:
        headers = {k: v for k, v in request.headers.items() if k in _HOP_HEADERS}
        data = await request.read() if request.can_read_body else None
        return await self._client.request(
            index, request.method, str(request.rel_url), headers=headers, data=data
        )
