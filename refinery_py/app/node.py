"""One node (or one worker process of a node): every component, built from the settings.

Only `app/` constructs concrete edge classes. Start-up order is outside-in for safety:
exporters first (so kept traces have somewhere to go), then the pipeline's ticker, then the
receivers, and the API last so `/ready` turns green only when everything listens. Shutdown runs the
other way: stop accepting, decide and flush every buffered trace, then stop the API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from refinery_py.api.auth import bearer_token_auth
from refinery_py.api.health import health_routes
from refinery_py.api.query_routes import query_routes
from refinery_py.api.rules_routes import rules_routes
from refinery_py.api.server import ApiServer
from refinery_py.app.process import machine_memory
from refinery_py.app.rules import build_engine
from refinery_py.assemble import DecisionCache, TraceBuffer
from refinery_py.cluster.forwarding import Forwarder
from refinery_py.cluster.ownership import Ownership
from refinery_py.config.problems import ConfigError
from refinery_py.config.rules_file import RulesFile
from refinery_py.config.rules_spec import RulesSpec
from refinery_py.config.settings import Settings
from refinery_py.decide.sampler import UnsupportedSampler
from refinery_py.decide.stats import SamplerStats
from refinery_py.export import OtlpExporter
from refinery_py.model import TraceExporter
from refinery_py.model.addresses import join_host_port, split_host_port
from refinery_py.otlp.ingest import OriginInterner
from refinery_py.pipeline import Pipeline
from refinery_py.receive import GrpcReceiver, HttpReceiver, Intake
from refinery_py.receive.recorder import Recorder
from refinery_py.store import StoreExporter, StoreReader
from refinery_py.telemetry import Metrics
from refinery_py.telemetry.sampler_metrics import SamplerCollector

log = logging.getLogger("refinery_py")

SHUTDOWN_FLUSH_TIMEOUT = 30.0
"""Seconds the exporters get on shutdown to deliver what is queued."""
RULES_POLL_INTERVAL = 1.0
"""Seconds between checks of the rules file for changes."""
RECEIVER_GRACE = 5.0
"""Seconds in-flight requests get to finish once the receivers stop accepting."""

PEER_QUEUE_BYTES = 64 << 20
"""Memory for spans waiting to be forwarded to one other worker."""


@dataclass(frozen=True)
class WorkerRole:
    """This process is worker `index` of a node whose workers' peer doors are `members`.

    Each worker owns the traces rendezvous hashing gives it over `members` (`host:port` of every
    worker's private OTLP/HTTP door, in worker order) and forwards other spans to their owner.
    """

    index: int
    members: tuple[str, ...]


@dataclass
class Node:
    """One running refinery_py node, or one worker of it: every component, built, not started."""

    settings: Settings
    rules: RulesSpec
    metrics: Metrics = field(default_factory=Metrics)
    role: WorkerRole | None = None

    def __post_init__(self) -> None:
        settings = self.settings
        traces = settings.traces
        self.engine = build_engine(self.rules, previous=None)
        if self.role is not None:
            self.engine.set_cluster_size(1, workers=len(self.role.members))
        # Through a method, not the bound stats(): a reload replaces the engine.
        self.metrics.registry.register(SamplerCollector(self.sampler_stats))
        self.exporters: list[TraceExporter] = []
        if settings.export.otlp is not None:
            otlp = settings.export.otlp
            self.exporters.append(
                OtlpExporter(
                    otlp.endpoint,
                    metrics=self.metrics,
                    protocol="http" if otlp.protocol == "http" else "grpc",
                    headers=otlp.headers,
                    compression="none" if otlp.compression == "none" else "gzip",
                    timeout=otlp.timeout,
                    insecure=not otlp.use_tls,
                    batch_max_spans=otlp.batch_max_spans,
                    batch_max_bytes=otlp.batch_max_bytes,
                    batch_timeout=otlp.batch_timeout,
                    queue_max_bytes=otlp.queue_max_bytes,
                    concurrency=otlp.concurrency,
                    retry_initial_interval=otlp.retry_initial_interval,
                    retry_max_interval=otlp.retry_max_interval,
                    retry_max_elapsed=otlp.retry_max_elapsed,
                )
            )
        workers = len(self.role.members) if self.role is not None else 1
        self.store: StoreExporter | None = None
        self.store_reader: StoreReader | None = None
        if settings.store.path is not None:
            self.store = StoreExporter(
                settings.store.path,
                metrics=self.metrics,
                retention=settings.store.retention,
                max_size=settings.store.max_size,
                queue_max_bytes=max(1, settings.store.queue_max_bytes // workers),
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
        self.peers: list[OtlpExporter] = []
        forwarder = None
        if self.role is not None:
            role = self.role
            peer_sinks = {
                index: OtlpExporter(
                    member,
                    metrics=self.metrics,
                    name="peer",
                    protocol="http",
                    compression="none",  # loopback: compressing costs more than it saves
                    batch_timeout=0.02,
                    queue_max_bytes=PEER_QUEUE_BYTES,
                    retry_initial_interval=0.1,
                    retry_max_interval=2.0,
                    retry_max_elapsed=60.0,
                )
                for index, member in enumerate(role.members)
                if index != role.index
            }
            self.peers = list(peer_sinks.values())
            forwarder = Forwarder(Ownership(role.members, role.index), peer_sinks, self.metrics)
        self.pipeline = Pipeline(
            buffer=buffer,
            decider=self.engine,
            exporters=self.exporters,
            metrics=self.metrics,
            customer_fields=settings.customer_fields,
            max_memory=traces.memory_budget(machine_memory()) // workers,
            dry_run=settings.dry_run,
            forwarder=forwarder,
        )
        self.recorder = (
            Recorder(
                Path(settings.record.dir),
                metrics=self.metrics,
                max_file_bytes=settings.record.max_file_size,
                max_total_bytes=settings.record.max_total_size,
                queue_max_bytes=max(1, settings.record.queue_max_bytes // workers),
                file_prefix=f"traces-w{self.role.index}-" if self.role is not None else "traces-",
            )
            if settings.record.dir
            else None
        )
        intake = Intake(self.pipeline, OriginInterner(), self.metrics, recorder=self.recorder)
        max_request = settings.limits.max_request_bytes
        grpc_host, grpc_port = split_host_port(settings.listen.otlp_grpc)
        http_host, http_port = split_host_port(settings.listen.otlp_http)
        api_host, api_port = split_host_port(settings.listen.api)
        shared = self.role is not None  # the workers of a node share its public ports
        self.grpc = GrpcReceiver(intake, grpc_host, grpc_port, max_request, reuse_port=shared)
        self.http = HttpReceiver(intake, http_host, http_port, max_request, reuse_port=shared)
        self.peer_door: HttpReceiver | None = None
        if self.role is not None:
            peer_host, peer_port = split_host_port(self.role.members[self.role.index])
            peer_intake = Intake(self.pipeline, OriginInterner(), self.metrics, peer=True)
            # Forwarded requests are at most a batch of spans, but leave room for big traces.
            self.peer_door = HttpReceiver(peer_intake, peer_host, peer_port, 4 * max_request)
        self.api = ApiServer(
            api_host,
            api_port,
            [
                *health_routes(self.metrics.registry, self.readiness),
                *query_routes(self.store_reader, self.pipeline.decisions.get),
                *rules_routes(self),
            ],
            middlewares=[bearer_token_auth(settings.api.token)] if settings.api.token else [],
        )
        self._ticker: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._state = "starting"
        self.rules_loaded_at = time.time()
        source = Path(self.rules.source) if self.rules.source else None
        self.rules_file = RulesFile(source) if source is not None and source.is_file() else None

    def sampler_stats(self) -> list[SamplerStats]:
        return self.engine.stats()

    def readiness(self) -> tuple[bool, str]:
        return self._state == "serving", self._state

    # ---- rules: what runs, and reloading it without a restart ------------------------------

    def rules_status(self) -> dict[str, Any]:
        return {
            "source": self.rules.source,
            "digest": self.rules.digest,
            "loaded_at": _rfc3339(self.rules_loaded_at),
            "watched": self.rules_file is not None,
            "targets": {
                target: type(spec).__name__.removesuffix("Spec")
                for target, spec in self.rules.samplers.items()
            },
        }

    def reload_rules(self, reason: str) -> dict[str, Any]:
        """Load the rules file again and switch to it if it changed and is valid.

        Buffered traces stay where they are and are decided by the new rules when due; samplers
        whose configuration did not change keep what they have learned. An invalid file is
        rejected whole: the running rules stay active.
        """
        if self.rules_file is None:
            return {"outcome": "unavailable", "message": "no rules file is in use to reload"}
        try:
            spec = self.rules_file.load()
            if spec.digest == self.rules.digest:
                self.metrics.rules_reloads.labels("unchanged").inc()
                return {"outcome": "unchanged", "digest": spec.digest}
            engine = build_engine(spec, previous=self.engine)
        except (ConfigError, UnsupportedSampler, ValueError) as exc:
            self.metrics.rules_reloads.labels("rejected").inc()
            problems = str(exc).splitlines()
            log.error(
                "rules reload (%s) rejected, keeping %s: %s",
                reason,
                self.rules.digest[:12],
                "; ".join(problems),
            )
            return {"outcome": "rejected", "digest": self.rules.digest, "errors": problems}
        self.rules, self.engine = spec, engine
        self.pipeline.decider = engine
        self.rules_loaded_at = time.time()
        self.metrics.rules_reloads.labels("applied").inc()
        log.info("rules reloaded (%s): %s, digest %s", reason, spec.source, spec.digest[:12])
        return {"outcome": "applied", "digest": spec.digest}

    async def _watch_rules(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.rules_file is not None and self.rules_file.changed():
                self.reload_rules("file changed")

    async def start(self) -> None:
        for exporter in (*self.exporters, *self.peers):
            await exporter.start()
        if self.recorder is not None:
            self.recorder.start()
        self._ticker = asyncio.create_task(self.pipeline.run(), name="decide-ticker")
        if self.rules_file is not None:
            self._watcher = asyncio.create_task(
                self._watch_rules(RULES_POLL_INTERVAL), name="rules-watcher"
            )
        if self.peer_door is not None:
            await self.peer_door.start()
        await self.grpc.start()
        await self.http.start()
        await self.api.start()
        self._state = "serving"
        if self.role is not None:
            # The supervisor logs the node's listeners; a worker says which one it is.
            log.info(
                "worker %d of %d serving (peer door %s, private API port %d)",
                self.role.index,
                len(self.role.members),
                self.role.members[self.role.index],
                self.api.port,
            )
            return
        host = self.settings.listen
        log.info("listening for OTLP/gRPC on %s", _with_port(host.otlp_grpc, self.grpc.port))
        log.info("listening for OTLP/HTTP on %s", _with_port(host.otlp_http, self.http.port))
        log.info("serving the API on %s", _with_port(host.api, self.api.port))
        log_outputs(self.settings, self.rules)

    async def stop(self) -> None:
        """Stop accepting, decide every buffered trace, flush the exporters, stop the API."""
        await self.stop_intake()
        await self.stop_rest()

    async def stop_intake(self) -> None:
        """Shutdown, first half: stop accepting spans and hand forwarded ones to their owners.

        A worker's peers keep their doors open until every worker has done this, so no span on
        its way to its owner is lost; then `stop_rest` decides and flushes.
        """
        self._state = "shutting down"
        if self._watcher is not None:
            self._watcher.cancel()
        await asyncio.gather(self.grpc.stop(RECEIVER_GRACE), self.http.stop(RECEIVER_GRACE))
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.close)
        await asyncio.gather(*(peer.close(SHUTDOWN_FLUSH_TIMEOUT) for peer in self.peers))
        self._state = "intake stopped"

    async def stop_rest(self) -> None:
        """Shutdown, second half: decide every buffered trace, flush exports, stop the API."""
        if self.peer_door is not None:
            await self.peer_door.stop(RECEIVER_GRACE)
        waiting = len(self.pipeline.buffer.traces)
        log.info("shutting down: deciding %d buffered traces and flushing exports", waiting)
        await self.pipeline.shutdown(SHUTDOWN_FLUSH_TIMEOUT)
        if self._ticker is not None:
            await self._ticker
        await self.api.stop()
        if self.store_reader is not None:
            await self.store_reader.aclose()
        log.info("stopped")


def log_outputs(settings: Settings, rules: RulesSpec) -> None:
    """Say at start-up where kept traces go, what is recorded and which rules run."""
    if settings.export.otlp is not None:
        otlp = settings.export.otlp
        log.info("exporting kept traces over OTLP/%s to %s", otlp.protocol, otlp.endpoint)
    if settings.store.path is not None:
        log.info("storing kept traces in %s", settings.store.path)
    if settings.record.dir:
        log.info("recording accepted traffic to %s", settings.record.dir)
    log.info("rules: %s", rules.source or "(inline)")
    if settings.dry_run:
        log.info("dry run: every trace is kept and marked with the rules' decision")


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _with_port(address: str, port: int) -> str:
    return join_host_port(split_host_port(address)[0], port)
