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
from dataclasses import dataclass, field
from pathlib import Path

import prometheus_client

from refinery_py.api.health import health_routes
from refinery_py.api.server import ApiServer
from refinery_py.assemble import DecisionCache, TraceBuffer
from refinery_py.config.rules import load_rules
from refinery_py.config.rules_spec import DEFAULT_TARGET, RulesBasedSpec, RulesSpec
from refinery_py.config.settings import Settings
from refinery_py.decide.engine import RulesEngine
from refinery_py.export import OtlpExporter
from refinery_py.model import TraceExporter
from refinery_py.model.addresses import join_host_port, split_host_port
from refinery_py.otlp.ingest import OriginInterner
from refinery_py.pipeline import Pipeline
from refinery_py.receive import GrpcReceiver, HttpReceiver, Intake
from refinery_py.telemetry import Metrics

log = logging.getLogger("refinery_py")

SHUTDOWN_FLUSH_TIMEOUT = 30.0
"""Seconds the exporters get on shutdown to deliver what is queued."""
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
        self.engine = RulesEngine(self.rules)
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
        )
        intake = Intake(self.pipeline, OriginInterner(), self.metrics)
        max_request = settings.limits.max_request_bytes
        grpc_host, grpc_port = split_host_port(settings.listen.otlp_grpc)
        http_host, http_port = split_host_port(settings.listen.otlp_http)
        api_host, api_port = split_host_port(settings.listen.api)
        self.grpc = GrpcReceiver(intake, grpc_host, grpc_port, max_request)
        self.http = HttpReceiver(intake, http_host, http_port, max_request)
        self.api = ApiServer(
            api_host, api_port, health_routes(self.metrics.registry, self.readiness)
        )
        self._ticker: asyncio.Task[None] | None = None
        self._state = "starting"

    def readiness(self) -> tuple[bool, str]:
        return self._state == "serving", self._state

    async def start(self) -> None:
        for exporter in self.exporters:
            await exporter.start()
        self._ticker = asyncio.create_task(self.pipeline.run(), name="decide-ticker")
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
        log.info("rules: %s", self.rules.source or "(inline)")

    async def stop(self) -> None:
        """Stop accepting, decide every buffered trace, flush the exporters, stop the API."""
        self._state = "shutting down"
        await asyncio.gather(self.grpc.stop(RECEIVER_GRACE), self.http.stop(RECEIVER_GRACE))
        waiting = len(self.pipeline.buffer.traces)
        log.info("shutting down: deciding %d buffered traces and flushing exports", waiting)
        await self.pipeline.shutdown(SHUTDOWN_FLUSH_TIMEOUT)
        if self._ticker is not None:
            await self._ticker
        await self.api.stop()
        log.info("stopped")


def _with_port(address: str, port: int) -> str:
    return join_host_port(split_host_port(address)[0], port)


async def serve(settings: Settings, rules: RulesSpec) -> int:
    """Run a node until SIGTERM or SIGINT; a second signal exits at once. Returns the exit code."""
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    node = Node(settings, rules)
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
    try:
        await node.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        await node.stop()
        return 1
    await stop.wait()
    await node.stop()
    return 0
