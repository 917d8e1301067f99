"""The composition root: builds every component from the settings and runs the node.

Only this module constructs concrete edge classes. Start-up order is outside-in for safety:
exporters first (so kept traces have somewhere to go), then the pipeline's ticker, then the
receivers, and the API last so `/ready` turns green only when everything listens. Shutdown runs the
other way: stop accepting, decide and flush every buffered trace, then stop the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import prometheus_client

from refinery_py.api.auth import bearer_token_auth
from refinery_py.api.health import health_routes
from refinery_py.api.query_routes import query_routes
from refinery_py.api.rules_routes import rules_routes
from refinery_py.api.server import ApiServer
from refinery_py.assemble import DecisionCache, TraceBuffer
from refinery_py.config.problems import ConfigError
from refinery_py.config.rules import load_rules
from refinery_py.config.rules_file import RulesFile
from refinery_py.config.rules_spec import DEFAULT_TARGET, RulesBasedSpec, RulesSpec
from refinery_py.config.settings import Settings
from refinery_py.decide.engine import RulesEngine
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

KEEP_EVERYTHING = RulesSpec(
    rules_version=2,
    samplers={DEFAULT_TARGET: RulesBasedSpec(rules=())},
    source="(built-in: keep everything)",
)
"""The rules used when no rules file is configured or the default file is absent."""


def tune_allocator() -> None:
    """Make glibc malloc friendlier to a Python server (measured; see design.md).

    One arena instead of one per thread doubles the gRPC server's throughput, and a high trim /
    mmap threshold stops large request buffers from being returned to the kernel and faulted back
    in on every request. Environment variables would be read too late, so use mallopt.
    """
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc (musl, macOS): nothing to tune
    m_trim_threshold, m_top_pad, m_mmap_threshold, m_arena_max = -1, -2, -3, -8
    for option, value in (
        (m_arena_max, 1),
        (m_trim_threshold, 256 << 20),
        (m_top_pad, 64 << 20),
        (m_mmap_threshold, 32 << 20),
    ):
        mallopt(option, value)


def machine_memory() -> int:
    """Physical memory available to this process: the cgroup limit when one is set."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            limit = int(Path(limit_file).read_text().strip())
            if 0 < limit < physical:
                return limit
    return physical


def resolve_rules(settings: Settings, override: str | None) -> RulesSpec:
    """The rules to run: `--rules`, else the config's `rules_file`, else keep everything.

    A relative `rules_file` is read relative to the config file. The built-in default path may be
    absent (then everything is kept); a path the user named must exist.
    """
    if override is not None:
        return load_rules(override)
    if settings.rules_file is None:
        return KEEP_EVERYTHING
    path = Path(settings.rules_file)
    if not path.is_absolute() and settings.source:
        path = Path(settings.source).parent / path
    if not path.exists() and settings.rules_file == Settings().rules_file:
        log.info("no rules file at %s: keeping every trace", path)
        return KEEP_EVERYTHING
    return load_rules(path)


@dataclass
class Node:
    """One running refinery_py node: every component, built but not yet started."""

    settings: Settings
    rules: RulesSpec
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        settings = self.settings
        traces = settings.traces
        self.engine = build_engine(self.rules, previous=None)
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
        self.store: StoreExporter | None = None
        self.store_reader: StoreReader | None = None
        if settings.store.path is not None:
            self.store = StoreExporter(
                settings.store.path,
                metrics=self.metrics,
                retention=settings.store.retention,
                max_size=settings.store.max_size,
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
        self.pipeline = Pipeline(
            buffer=buffer,
            decider=self.engine,
            exporters=self.exporters,
            metrics=self.metrics,
            customer_fields=settings.customer_fields,
            max_memory=traces.memory_budget(machine_memory()),
            dry_run=settings.dry_run,
        )
        self.recorder = (
            Recorder(
                Path(settings.record.dir),
                metrics=self.metrics,
                max_file_bytes=settings.record.max_file_size,
                max_total_bytes=settings.record.max_total_size,
                queue_max_bytes=settings.record.queue_max_bytes,
            )
            if settings.record.dir
            else None
        )
        intake = Intake(self.pipeline, OriginInterner(), self.metrics, recorder=self.recorder)
        max_request = settings.limits.max_request_bytes
        grpc_host, grpc_port = split_host_port(settings.listen.otlp_grpc)
        http_host, http_port = split_host_port(settings.listen.otlp_http)
        api_host, api_port = split_host_port(settings.listen.api)
        self.grpc = GrpcReceiver(intake, grpc_host, grpc_port, max_request)
        self.http = HttpReceiver(intake, http_host, http_port, max_request)
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
        for exporter in self.exporters:
            await exporter.start()
        if self.recorder is not None:
            self.recorder.start()
        self._ticker = asyncio.create_task(self.pipeline.run(), name="decide-ticker")
        if self.rules_file is not None:
            self._watcher = asyncio.create_task(
                self._watch_rules(RULES_POLL_INTERVAL), name="rules-watcher"
            )
        await self.grpc.start()
        await self.http.start()
        await self.api.start()
        self._state = "serving"
        host = self.settings.listen
        log.info("listening for OTLP/gRPC on %s", _with_port(host.otlp_grpc, self.grpc.port))
        log.info("listening for OTLP/HTTP on %s", _with_port(host.otlp_http, self.http.port))
        log.info("serving the API on %s", _with_port(host.api, self.api.port))
        if self.exporters and self.settings.export.otlp is not None:
            otlp = self.settings.export.otlp
            log.info("exporting kept traces over OTLP/%s to %s", otlp.protocol, otlp.endpoint)
        if self.store is not None:
            log.info("storing kept traces in %s", self.store.path)
        if self.recorder is not None:
            log.info("recording accepted traffic to %s", self.recorder.directory)
        log.info("rules: %s", self.rules.source or "(inline)")
        if self.settings.dry_run:
            log.info("dry run: every trace is kept and marked with the rules' decision")

    async def stop(self) -> None:
        """Stop accepting, decide every buffered trace, flush the exporters, stop the API."""
        self._state = "shutting down"
        if self._watcher is not None:
            self._watcher.cancel()
        await asyncio.gather(self.grpc.stop(RECEIVER_GRACE), self.http.stop(RECEIVER_GRACE))
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.close)
        waiting = len(self.pipeline.buffer.traces)
        log.info("shutting down: deciding %d buffered traces and flushing exports", waiting)
        await self.pipeline.shutdown(SHUTDOWN_FLUSH_TIMEOUT)
        if self._ticker is not None:
            await self._ticker
        await self.api.stop()
        if self.store_reader is not None:
            await self.store_reader.aclose()
        log.info("stopped")


def build_engine(spec: RulesSpec, previous: RulesEngine | None) -> RulesEngine:
    """The rules engine for `spec`, reusing `previous`'s samplers where their config is equal."""
    return RulesEngine(spec, previous=previous)


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _with_port(address: str, port: int) -> str:
    return join_host_port(split_host_port(address)[0], port)


async def serve(settings: Settings, rules: RulesSpec) -> int:
    """Run a node until SIGTERM or SIGINT; a second signal exits at once. Returns the exit code."""
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        node = Node(settings, rules)
    except (UnsupportedSampler, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now without flushing", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, node.reload_rules, "SIGHUP")
    try:
        await node.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        await node.stop()
        return 1
    await stop.wait()
    await node.stop()
    return 0
