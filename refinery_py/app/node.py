"""One node (or one worker process of a node): every component, built from the settings.

Only `app/` constructs concrete edge classes. Start-up order is outside-in for safety:
exporters first (so kept traces have somewhere to go), then the pipeline's ticker, the peer door
and the cluster membership, then the front doors, and the API last so `/ready` turns green only
when everything listens. Shutdown runs the other way, in two phases (see `stop_intake` and
`finish`), with a cluster member first leaving the cluster so its traces go to their new owners.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from refinery_py.api.auth import bearer_token_auth
from refinery_py.api.cluster_routes import cluster_routes, owner_trace_lookup
from refinery_py.api.errors import with_json_errors
from refinery_py.api.health import health_routes
from refinery_py.api.query_routes import QueryHandlers, query_routes
from refinery_py.api.rules_routes import rules_routes
from refinery_py.api.server import ApiServer
from refinery_py.app.membership import member_source
from refinery_py.app.outputs import log_outputs, otlp_exporter
from refinery_py.app.phase_times import PhaseTimes
from refinery_py.app.process import machine_memory
from refinery_py.app.role import WorkerRole, api_socket, peer_socket, supervisor_socket
from refinery_py.app.rules_admin import NodeRules
from refinery_py.app.security import Security
from refinery_py.assemble import DecisionCache, TraceBuffer
from refinery_py.cluster.body_file import remove_left_behind
from refinery_py.cluster.forwarding import Forwarder
from refinery_py.cluster.membership import ClusterController, ClusterView
from refinery_py.cluster.ownership import Placement
from refinery_py.cluster.peer_door import PeerDoor
from refinery_py.cluster.rules_sync import RulesSync
from refinery_py.config.rules_spec import RulesSpec
from refinery_py.config.settings import Settings
from refinery_py.decide.engine import RulesEngine
from refinery_py.decide.stats import SamplerStats
from refinery_py.model import Admission, SpanBatch, SpanSink, TraceExporter
from refinery_py.model.addresses import join_host_port, split_host_port
from refinery_py.otlp.ingest import OriginInterner
from refinery_py.pipeline import Pipeline, Relief
from refinery_py.receive import GrpcReceiver, HttpReceiver, Intake
from refinery_py.receive.http_receiver import read_body
from refinery_py.receive.inflate import BodyTooLarge
from refinery_py.receive.recorder import Recorder
from refinery_py.store import StoreExporter, StoreReader
from refinery_py.telemetry import Metrics
from refinery_py.telemetry.metrics import MembershipMetrics
from refinery_py.telemetry.sampler_metrics import SamplerCollector

log = logging.getLogger("refinery_py")

SHUTDOWN_FLUSH_TIMEOUT = 30.0
"""Seconds the exporters (and the links to other members) get on shutdown to deliver."""
RECEIVER_GRACE = 5.0
"""Seconds in-flight requests get to finish once the receivers stop accepting."""
IDLE_PEERS = 1.0
"""A leaving member stops passing spans on once none have arrived for this many seconds."""


@dataclass
class Node:
    """One running refinery_py node, or one worker of it: every component, built, not started."""

    settings: Settings
    rules_spec: RulesSpec
    metrics: Metrics = field(default_factory=Metrics)
    role: WorkerRole = field(default_factory=lambda: WorkerRole(0, 1))

    def __post_init__(self) -> None:
        settings = self.settings
        role = self.role
        traces = settings.traces
        workers = role.workers
        self.security = Security(settings, self.metrics.credentials)
        self.rules = NodeRules(self.rules_spec, self.metrics, self._use_engine)
        self.rules.engine.set_cluster_size(1, workers=workers)
        # Through a method, not the bound stats(): a reload replaces the engine.
        self.metrics.registry.register(SamplerCollector(self.sampler_stats))
        self.exporters: list[TraceExporter] = []
        self.upstream = (
            None
            if settings.export.otlp is None
            else otlp_exporter(settings, self.metrics, self.security.export)
        )
        if self.upstream is not None:
            self.exporters.append(self.upstream)
        self.store: StoreExporter | None = None
        self.store_reader: StoreReader | None = None
        if settings.store.path is not None:
            self.store = StoreExporter(
                settings.store.path,
                metrics=self.metrics,
                retention=settings.store.retention,
                max_size=settings.store.max_size,
                queue_max_bytes=max(1, settings.store.queue_max_bytes // workers),
                reports_file=role.index == 0,
            )
            self.store_reader = StoreReader(settings.store.path)
            self.exporters.append(self.store)
        buffer = TraceBuffer(
            send_delay=traces.send_delay,
            trace_timeout=traces.trace_timeout,
            span_limit=traces.span_limit,
            decisions=DecisionCache(
                traces.effective_decision_cache_ttl, traces.decision_cache_max_memory
            ),
        )
        if role.body_dir is not None:
            remove_left_behind(role.body_dir, role.index)  # a predecessor that died kept its own
        self.forwarder = None if role.alone else self._forwarder()
        self.pipeline = Pipeline(
            buffer=buffer,
            decider=self.rules.engine,
            exporters=self.exporters,
            metrics=self.metrics,
            customer_fields=settings.customer_fields,
            max_memory=traces.memory_budget(machine_memory()) // workers,
            dry_run=settings.dry_run,
            forwarder=self.forwarder,
            # The store is best effort by design (its drops never touch the export); the
            # upstream export is what admission must not overfill.
            backlogs=[self.upstream] if self.upstream is not None else [],
            relief=self._relief(),
            refusal_wait=traces.refusal_wait,
        )
        self.recorder = (
            Recorder(
                Path(settings.record.dir),
                metrics=self.metrics,
                max_file_bytes=settings.record.max_file_size,
                max_total_bytes=settings.record.max_total_size,
                queue_max_bytes=max(1, settings.record.queue_max_bytes // workers),
                file_prefix=f"traces-w{role.index}-" if workers > 1 else "traces-",
            )
            if settings.record.dir
            else None
        )
        intake = self._intake(self.pipeline)
        max_request = settings.limits.max_request_bytes
        grpc_host, grpc_port = split_host_port(settings.listen.otlp_grpc)
        http_host, http_port = split_host_port(settings.listen.otlp_http)
        shared = workers > 1  # the workers of a node share its public ports
        self.grpc = GrpcReceiver(
            intake,
            grpc_host,
            grpc_port,
            max_request,
            reuse_port=shared,
            credentials=self.security.grpc_credentials("otlp_grpc"),
        )
        self.http = HttpReceiver(
            intake,
            http_host,
            http_port,
            max_request,
            reuse_port=shared,
            ssl_context=self.security.server_context("otlp_http"),
        )
        self.owned_doors = self._owned_doors(max_request, shared)
        self.queries = QueryHandlers(self.store_reader, self.pipeline.decisions.get)
        self.peer_door = None if self.forwarder is None else self._peer_door(max_request)
        self.controller: ClusterController | None = None
        if workers == 1:
            # The process that runs the membership reports it (a supervisor does, for workers).
            membership = MembershipMetrics(self.metrics.registry)
            membership.members.set(1)
        if role.cluster is not None and workers == 1:
            # A node of one process runs its membership itself; a supervisor does it for its
            # workers and tells them each new view.
            self.controller = ClusterController(
                member_source(settings, role.cluster.node, self.security.peer_links),
                self_node=role.cluster.node,
                source_name=settings.cluster.source,
                on_view=self.apply_view,
                metrics=membership,
            )
        self.rules_sync: RulesSync | None = None
        if self.controller is not None and settings.cluster.redis is not None:
            redis = settings.cluster.redis
            self.rules_sync = RulesSync(redis.url, name=redis.name, node=self.controller.self_node)
            self.rules.on_applied = self._share_rules
        self._background: set[asyncio.Task[None]] = set()
        self.view = role.cluster.view if role.cluster is not None else None
        self.api = self._api()
        self._ticker: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._state = "starting"
        self._shutdown = PhaseTimes()

    def _relief(self) -> Relief | None:
        relief = self.settings.stress_relief
        if relief.mode != "relieve":
            return None
        return Relief(
            rate=lambda: relief.sample_rate or self.rules.engine.fallback_rate(),
            activate_after=relief.activate_after,
            deactivate_after=relief.deactivate_after,
        )

    def _intake(self, sink: SpanSink) -> Intake:
        """The decode funnel of a set of OTLP doors, with the ingest tokens they require."""
        fields = self.settings.customer_fields
        return Intake(
            sink,
            OriginInterner(),
            self.metrics,
            recorder=self.recorder,
            auth=self.security.ingest,
            customer_field=fields[0] if fields else None,
        )

    def _owned_doors(self, max_request: int, reserved: bool) -> list[GrpcReceiver | HttpReceiver]:
        """This worker's own OTLP ports, for a trace-ID-routing front (nothing is forwarded);
        the same TLS and tokens as the node's OTLP doors."""
        listen = self.settings.listen
        intake = self._intake(_OwnedSpans(self.pipeline))
        security = self.security
        doors: list[GrpcReceiver | HttpReceiver] = []
        if listen.otlp_grpc_per_worker is not None:
            host, port = split_host_port(listen.otlp_grpc_per_worker)
            credentials = security.grpc_credentials("otlp_grpc")
            doors.append(
                GrpcReceiver(
                    intake, host, port, max_request, reuse_port=reserved, credentials=credentials
                )
            )
        if listen.otlp_http_per_worker is not None:
            host, port = split_host_port(listen.otlp_http_per_worker)
            context = security.server_context("otlp_http")
            doors.append(
                HttpReceiver(
                    intake, host, port, max_request, reuse_port=reserved, ssl_context=context
                )
            )
        return doors

    def _forwarder(self) -> Forwarder:
        role = self.role
        cluster = role.cluster
        if cluster is not None:
            placement = Placement(cluster.view.nodes, cluster.node, role.workers, role.index)
        else:
            placement = Placement.single("", role.workers, role.index)
        return Forwarder(
            placement,
            sibling_doors=role.sibling_doors(),
            metrics=self.metrics,
            secret=self.settings.cluster.secret,
            queue_max_bytes=self.settings.cluster.queue_max_bytes,
            max_wait=forward_max_wait(self.settings.traces.send_delay),
            linger=self.settings.cluster.forward_linger,
            tls=self.security.peer_links,
            body_dir=role.body_dir,
        )

    def _peer_door(self, max_request: int) -> PeerDoor:
        role = self.role
        host, port = "", 0
        if role.cluster is not None:
            host, port = split_host_port(role.cluster.listen[role.index])
        return PeerDoor(
            self.pipeline,
            metrics=self.metrics,
            tcp=(host, port) if role.cluster is not None else None,
            unix_path=peer_socket(role.private_dir, role.index) if role.workers > 1 else None,
            doors=role.cluster.doors if role.cluster is not None else (),
            worker=role.index,
            secret=self.settings.cluster.secret,
            # A forwarded request holds at most one front-door request's spans plus their
            # bookkeeping; a handoff is sent in parts of a few MiB.
            max_request_bytes=4 * max_request + (16 << 20),
            read_body=read_peer_body,
            lookup=with_json_errors(self.queries.trace),
            on_membership=self._membership_event,
            reuse_port=role.cluster is not None,  # its port was reserved at start-up
            ssl_context=self.security.server_context("peer"),
            body_files=role.body_dir is not None,
        )

    def _api(self) -> ApiServer:
        settings = self.settings
        trace_lookup = None
        if self.forwarder is not None and self.role.cluster is not None:
            trace_lookup = owner_trace_lookup(
                self.queries.trace,
                self.forwarder.destination,
                settings.cluster.secret,
                self.security.peer_links,
            )
        routes = [
            *health_routes(self.metrics.registry, self.readiness),
            *query_routes(self.queries, trace=trace_lookup),
            *rules_routes(self.rules),
            *cluster_routes(self.cluster_status),
        ]
        middlewares = [bearer_token_auth(settings.api.token)] if settings.api.token else []
        if self.role.workers > 1:
            routes += [web.post("/internal/view", self._view_from_supervisor)]
            routes += [web.post("/internal/rules", self._rules_from_supervisor)]
            routes += [web.get("/internal/status", self._status)]
            return ApiServer(
                "",
                0,
                routes,
                middlewares=middlewares,
                unix_path=api_socket(self.role.private_dir, self.role.index),
            )
        host, port = split_host_port(settings.listen.api)
        return ApiServer(
            host,
            port,
            routes,
            middlewares=middlewares,
            ssl_context=self.security.server_context("api"),
        )

    # ---- state -----------------------------------------------------------------------------

    def sampler_stats(self) -> list[SamplerStats]:
        return self.rules.engine.stats()

    def readiness(self) -> tuple[bool, str]:
        return self._state == "serving", self._state

    def _use_engine(self, engine: RulesEngine) -> None:
        self.pipeline.decider = engine

    def hangup(self) -> None:
        """SIGHUP: read the rules again, and any changed certificate, key, CA or token file."""
        self.rules.reload("SIGHUP")
        self.security.watcher.check_now()

    def cluster_status(self) -> dict[str, Any]:
        """`GET /api/v1/cluster`."""
        if self.view is None:
            name = join_host_port(*split_host_port(self.settings.listen.peer))
            return ClusterView((name,), name, "single").as_json()
        return self.view.as_json()

    # ---- the cluster -------------------------------------------------------------------------

    def apply_view(self, view: ClusterView) -> None:
        """New members: route by the new owners, hand over what we no longer own."""
        self.view = view
        cluster = self.role.cluster
        if self.forwarder is None or cluster is None:
            return
        placement = Placement(view.nodes, cluster.node, self.role.workers, self.role.index)
        self.pipeline.set_placement(placement)
        self.rules.engine.set_cluster_size(max(1, len(view.nodes)), self.role.workers)

    async def _membership_event(self, node: str, joined: bool) -> None:
        """A static member announced a join or a leave: whoever runs our membership hears it."""
        if self.controller is not None:
            self.controller.member_event(node, joined)
        elif self.role.workers > 1:
            path = supervisor_socket(self.role.private_dir)
            try:
                async with (
                    aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as s,
                    s.post(
                        "http://supervisor/internal/membership",
                        json={"node": node, "joined": joined},
                    ),
                ):
                    pass
            except (aiohttp.ClientError, OSError) as error:
                log.warning("could not pass on %s's announcement: %s", node, error)

    def _share_rules(self, spec: RulesSpec) -> None:
        if self.rules_sync is not None:
            task = asyncio.create_task(self.rules_sync.publish(spec.text, spec.digest))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _rules_from_supervisor(self, request: web.Request) -> web.Response:
        document = await request.json()
        outcome = self.rules.apply_shared(
            str(document["text"]), str(document["digest"]), str(document["member"])
        )
        return web.json_response(outcome)

    async def _view_from_supervisor(self, request: web.Request) -> web.Response:
        document = await request.json()
        self.apply_view(
            ClusterView(tuple(document["nodes"]), str(document["self"]), str(document["source"]))
        )
        return web.json_response({"applied": True})

    async def _status(self, _: web.Request) -> web.Response:
        idle = self.peer_door.idle_seconds() if self.peer_door is not None else None
        return web.json_response({"state": self._state, "peer_idle": idle})

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        for exporter in self.exporters:
            await exporter.start()
        if self.recorder is not None:
            self.recorder.start()
        self._ticker = asyncio.create_task(self.pipeline.run(), name="decide-ticker")
        if self.rules.file is not None:
            self._watcher = asyncio.create_task(self.rules.watch(), name="rules-watcher")
        self.security.watcher.start()
        if self.forwarder is not None:
            self.forwarder.start()
        if self.peer_door is not None:
            await self.peer_door.start()
        if self.controller is not None:
            await self.controller.start()
        if self.rules_sync is not None:
            self.rules_sync.start(self.rules.apply_shared_quietly, lambda: self.rules.spec.digest)
        await self.grpc.start()
        await self.http.start()
        for owned in self.owned_doors:
            await owned.start()
        await self.api.start()
        self._state = "serving"
        if self.role.workers > 1:
            # The supervisor logs the node's listeners; a worker says which one it is.
            peer = self.role.cluster.doors[self.role.index] if self.role.cluster else "-"
            log.info(
                "worker %d of %d serving (peer door %s)", self.role.index, self.role.workers, peer
            )
            return
        listen = self.settings.listen
        log.info("listening for OTLP/gRPC on %s", _with_port(listen.otlp_grpc, self.grpc.port))
        log.info("listening for OTLP/HTTP on %s", _with_port(listen.otlp_http, self.http.port))
        for door, address in zip(
            self.owned_doors,
            (a for a in (listen.otlp_grpc_per_worker, listen.otlp_http_per_worker) if a),
            strict=True,
        ):
            kind = "gRPC" if isinstance(door, GrpcReceiver) else "HTTP"
            log.info("listening for routed OTLP/%s on %s", kind, _with_port(address, door.port))
        if self.peer_door is not None and self.role.cluster is not None:
            log.info(
                "listening for cluster peers on %s (advertised as %s)",
                _with_port(self.role.cluster.listen[0], self.peer_door.port),
                self.role.cluster.node,
            )
        log.info("serving the API on %s", _with_port(listen.api, self.api.port))
        log_outputs(self.settings, self.rules_spec)

    async def stop(self) -> None:
        """The whole shutdown of a node of one process."""
        await self.leave()
        await self.stop_intake()
        await self.drain()
        await self.finish()

    async def leave(self) -> None:
        """Leave the cluster (if in one): deregister, and hand every trace to its new owner."""
        if self.controller is not None:
            with self._shutdown.phase("leave"):
                await self.controller.leave()

    async def stop_intake(self) -> None:
        """Shutdown, first phase: stop the front doors and deliver what goes to sibling workers.

        Sibling workers keep their peer doors open until every worker has done this, so no span
        on its way to its owner is lost.
        """
        self._state = "shutting down"
        if self._watcher is not None:
            self._watcher.cancel()
        with self._shutdown.phase("front doors"):
            await asyncio.gather(
                self.grpc.stop(RECEIVER_GRACE),
                self.http.stop(RECEIVER_GRACE),
                *(door.stop(RECEIVER_GRACE) for door in self.owned_doors),
            )
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.close)
        if self.forwarder is not None:
            with self._shutdown.phase("sibling links"):
                kept = await self.forwarder.close_links(
                    self.role.sibling_doors(), SHUTDOWN_FLUSH_TIMEOUT
                )
            self.pipeline.adopt_leftovers(kept)
        self._state = "intake stopped"

    async def drain(self) -> None:
        """A leaving cluster member keeps passing on what other members still send it, until
        they have all seen it leave (nothing arrived for a second) or `drain_timeout`."""
        if self.peer_door is None or self.role.cluster is None:
            return
        deadline = time.monotonic() + self.settings.cluster.drain_timeout
        with self._shutdown.phase("drain"):
            while time.monotonic() < deadline and self.peer_door.idle_seconds() < IDLE_PEERS:
                await asyncio.sleep(0.1)

    async def finish(self) -> None:
        """Shutdown, second phase: close the peer door, deliver what is forwarded, decide every
        trace still here, flush the exporters, stop the API."""
        if self.peer_door is not None:
            with self._shutdown.phase("peer door"):
                await self.peer_door.stop()
        if self.forwarder is not None:
            with self._shutdown.phase("peer links"):
                self.pipeline.adopt_leftovers(await self.forwarder.close(SHUTDOWN_FLUSH_TIMEOUT))
        waiting = len(self.pipeline.buffer.traces)
        log.info("shutting down: deciding %d buffered traces and flushing exports", waiting)
        with self._shutdown.phase("decide and flush"):
            await self.pipeline.shutdown(SHUTDOWN_FLUSH_TIMEOUT)
            if self._ticker is not None:
                await self._ticker
        with self._shutdown.phase("close"):
            await self.api.stop()
            await self.security.watcher.stop()
            if self.rules_sync is not None:
                await self.rules_sync.stop()
            if self.store_reader is not None:
                await self.store_reader.aclose()
        log.info("stopped (%s)", self._shutdown)


class _OwnedSpans:
    """The pipeline as the sink of this worker's own OTLP ports: what arrives there is ours."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def accept(self, batch: SpanBatch, protocol: str) -> Admission:
        return self._pipeline.accept_owned(batch, protocol)

    def refusal(self) -> Admission | None:
        return self._pipeline.refusal()


def forward_max_wait(send_delay: float) -> float:
    """How long forwarded spans may wait in a link's queue before front-door requests are
    refused: a quarter of send_delay, so they reach their owner in time, but at least 0.5 s.
    A busy link's request in flight (up to 8 MiB) takes a good part of that, and a shorter wait
    would throttle a healthy link; with a send_delay that short, some late spans are expected."""
    return max(0.5, send_delay / 4)


async def read_peer_body(request: web.Request, limit: int) -> bytes:
    """A peer request's body, read as the front doors read theirs: with one copy, not three."""
    try:
        return await read_body(request, limit)
    except BodyTooLarge:
        raise web.HTTPRequestEntityTooLarge(
            max_size=limit, actual_size=request.content_length or limit + 1
        ) from None


def _with_port(address: str, port: int) -> str:
    return join_host_port(split_host_port(address)[0], port)
