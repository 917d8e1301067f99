"""`serve --workers N`: one process per core, each owning the traces hashed to it.

The supervisor (`supervise`) holds the node's ports (see `ports`), runs its cluster membership
(`cluster_agent`), starts N worker processes (`worker_process`) and serves the node's API.
Every worker listens on the node's public OTLP ports (SO_REUSEPORT: the kernel spreads
connections), decides the traces it owns and forwards other spans to their owner: a sibling
worker through its Unix socket, another node's worker through that node's peer door. Start-up
fails, loudly, if a port cannot be had or a worker exits before it serves. A worker that dies
later is restarted; its peers queue what they forward to it until it is back.

Shutdown has phases so that no span on its way anywhere is lost: a cluster member first leaves
(deregisters, and its workers hand every trace and decision to their new owners); then every
worker stops accepting and delivers what it forwards to its siblings; a cluster member keeps its
peer doors open until the others have stopped sending (`drain`); finally the supervisor sends
SIGUSR1 and each worker decides what is left, flushes its exports and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess

import prometheus_client
from aiohttp import web

from refinery_py.api.server import ApiServer
from refinery_py.app.cluster_agent import ClusterAgent
from refinery_py.app.node import Node
from refinery_py.app.outputs import log_outputs
from refinery_py.app.phase_times import PhaseTimes
from refinery_py.app.ports import PortReservations
from refinery_py.app.private_dir import make_private_dir
from refinery_py.app.role import WorkerRole, cluster_role, supervisor_socket
from refinery_py.app.security import Security
from refinery_py.app.supervisor_api import SupervisorApi
from refinery_py.app.worker_client import WorkerClient
from refinery_py.app.worker_metrics import HELD, WorkerMetrics
from refinery_py.app.worker_process import DRAIN_TIMEOUT, run_worker
from refinery_py.cluster.membership import ClusterView
from refinery_py.config.addresses import HostPort
from refinery_py.config.rules_spec import RulesSpec
from refinery_py.config.settings import Settings
from refinery_py.decide.sampler import UnsupportedSampler
from refinery_py.model.addresses import join_host_port, split_host_port
from refinery_py.telemetry.metrics import MembershipMetrics

log = logging.getLogger("refinery_py")

START_TIMEOUT = 60.0
"""Seconds workers get to start listening before the node gives up."""
EXIT_TIMEOUT = 120.0
"""Seconds workers get to decide, flush and exit once told to finish."""
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
SCRAPE_INTERVAL = 2.0
"""Seconds between the supervisor's own scrapes of its workers (see `worker_metrics`)."""


# ---- the supervisor -----------------------------------------------------------------------


class Supervisor:
    """Starts, watches, restarts and stops the workers of one node; runs its membership."""

    def __init__(self, settings: Settings, rules: RulesSpec, workers: int) -> None:
        self.settings = settings
        self.rules = rules
        self.workers = workers
        self.private_dir = make_private_dir()
        self.reservations = PortReservations()
        try:
            listen = settings.listen
            self.public = replace(
                listen,
                otlp_grpc=HostPort(self.reservations.reserve(listen.otlp_grpc)),
                otlp_http=HostPort(self.reservations.reserve(listen.otlp_http)),
            )
            self.cluster = cluster_role(settings, workers, self.reservations.reserve)
            self.owned_grpc = self._reserve_each(listen.otlp_grpc_per_worker)
            self.owned_http = self._reserve_each(listen.otlp_http_per_worker)
            self.security = Security(settings)  # the API's certificate, the announcements' TLS
            link_tls = self.security.peer_links
        except BaseException:
            self.release()
            raise
        self.client = WorkerClient(self.private_dir, workers)
        self.registry = prometheus_client.CollectorRegistry()
        self.agent: ClusterAgent | None = None
        if self.cluster is None:
            MembershipMetrics(self.registry).members.set(1)  # a node on its own
        else:
            self.agent = ClusterAgent(
                settings,
                self.cluster,
                client=self.client,
                live_workers=self.live,
                rules=rules,
                registry=self.registry,
                link_tls=link_tls,
            )
        self._context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess | None] = [None] * workers
        self.restarts = 0
        self.stopping = False
        self.worker_metrics = WorkerMetrics(workers)
        self.lost_spans = prometheus_client.Counter(
            "refinery_worker_lost_spans",
            "Spans estimated lost with a worker process that died (from its last scrape), by "
            "where they were: buffered, export_queue, store_queue, forward_queue.",
            ["where"],
            registry=self.registry,
        )
        for where in HELD:  # from zero: the first death's loss must show as an increase
            self.lost_spans.labels(where)

    def _reserve_each(self, address: str | None) -> tuple[str, ...]:
        """Worker i's own port (address's port + i, or any free one for port 0), held now."""
        if address is None:
            return ()
        host, port = split_host_port(address)
        return tuple(
            self.reservations.reserve(join_host_port(host, port + i if port else 0))
            for i in range(self.workers)
        )

    def worker_settings(self, index: int) -> Settings:
        listen = replace(
            self.public,
            otlp_grpc_per_worker=HostPort(self.owned_grpc[index]) if self.owned_grpc else None,
            otlp_http_per_worker=HostPort(self.owned_http[index]) if self.owned_http else None,
        )
        return replace(self.settings, listen=listen)

    @property
    def view(self) -> ClusterView | None:
        return self.agent.view if self.agent is not None else None

    def release(self) -> None:
        """Give back the ports and the private directory."""
        self.reservations.close()
        shutil.rmtree(self.private_dir, ignore_errors=True)

    def role(self, index: int) -> WorkerRole:
        cluster = self.cluster
        if cluster is not None and self.view is not None:
            cluster = replace(cluster, view=self.view)
        return WorkerRole(index, self.workers, self.private_dir, cluster)

    def spawn(self, index: int) -> None:
        process = self._context.Process(
            target=run_worker,
            args=(self.worker_settings(index), self.rules, self.role(index)),
            name=f"refinery-worker-{index}",
            daemon=False,
        )
        process.start()
        self.processes[index] = process
        if self.agent is not None:
            self.agent.spawned(index)

    def live(self) -> list[int]:
        return [i for i, p in enumerate(self.processes) if p is not None and p.is_alive()]

    def alive(self) -> int:
        return sum(1 for p in self.processes if p is not None and p.is_alive())

    def signal_all(self, signum: int) -> None:
        for process in self.processes:
            if process is not None and process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def kill_all(self) -> None:
        self.signal_all(signal.SIGKILL)

    # ---- workers --------------------------------------------------------------------------

    async def wait_for(self, state: str, timeout: float) -> bool:
        """Until every live worker reports `state`; False on timeout. While starting, any worker
        that exits fails the wait: the node does not count a dead worker as started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if state == "serving" and any(p is None or not p.is_alive() for p in self.processes):
                return False
            live = [i for i, p in enumerate(self.processes) if p is not None and p.is_alive()]
            states = await asyncio.gather(*(self.client.state(i) for i in live))
            if all(s == state for s in states):
                return True
            await asyncio.sleep(0.1)
        return False

    async def scrape(self) -> None:
        """Keep a recent scrape of every worker (what it counted and held), for when it dies."""
        while not self.stopping:
            live = self.live()
            lives = [self.worker_metrics.life(i) for i in live]
            texts = await asyncio.gather(*(self.client.metrics(i) for i in live))
            for index, text, life in zip(live, texts, lives, strict=True):
                self.worker_metrics.seen(index, text, life)
            await asyncio.sleep(SCRAPE_INTERVAL)

    async def watch(self) -> None:
        """Restart workers that exit while the node is serving."""
        failures = [0] * len(self.processes)
        while not self.stopping:
            await asyncio.sleep(0.5)
            for index, process in enumerate(self.processes):
                if self.stopping or process is None or process.is_alive():
                    continue
                delay = RESTART_BACKOFF[min(failures[index], len(RESTART_BACKOFF) - 1)]
                loss = self.worker_metrics.died(index)
                for where, spans in loss.spans.items():
                    if spans:
                        self.lost_spans.labels(where).inc(spans)
                log.error(
                    "worker %d exited with code %s; about %d spans died with it (%d traces "
                    "buffered, %s; as of %.1fs before); restarting in %gs",
                    index,
                    process.exitcode,
                    loss.total,
                    loss.traces,
                    ", ".join(f"{int(v)} {k.replace('_', ' ')}" for k, v in loss.spans.items()),
                    loss.age,
                    delay,
                )
                failures[index] += 1
                self.processes[index] = None
                await asyncio.sleep(delay)
                if not self.stopping:
                    self.spawn(index)
                    self.restarts += 1

    async def drain(self) -> None:
        """A leaving member's workers keep passing spans on until nothing arrives for a second."""
        if self.cluster is None:
            return
        deadline = time.monotonic() + self.settings.cluster.drain_timeout
        while time.monotonic() < deadline:
            idle = await asyncio.gather(*(self.client.peer_idle(i) for i in range(self.workers)))
            if all(seconds is None or seconds >= 1.0 for seconds in idle):
                return
            await asyncio.sleep(0.1)

    async def stop(self) -> int:
        """The phased shutdown; the exit code is 0 when every worker exited cleanly."""
        self.stopping = True
        times = PhaseTimes()
        if self.agent is not None:
            with times.phase("leave"):
                await self.agent.leave(10.0)
        self.signal_all(signal.SIGTERM)
        with times.phase("intake"):
            if not await self.wait_for("intake stopped", DRAIN_TIMEOUT):
                log.warning("not every worker flushed its forwarded spans in time; finishing")
        with times.phase("drain"):
            await self.drain()
        self.signal_all(signal.SIGUSR1)
        deadline = time.monotonic() + EXIT_TIMEOUT
        with times.phase("workers finish"):
            for process in self.processes:
                if process is not None:
                    await asyncio.to_thread(process.join, max(0.0, deadline - time.monotonic()))
        log.info("workers stopped (%s)", times)
        codes = [p.exitcode for p in self.processes if p is not None]
        return 0 if all(code == 0 for code in codes) else 1


async def supervise(settings: Settings, rules: RulesSpec, workers: int) -> int:
    """Run a node as `workers` processes until SIGTERM or SIGINT. Returns the exit code."""
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        # Build one node in this process first: a rules or config problem is reported once,
        # here, instead of by every worker.
        Node(settings, rules)
        supervisor = Supervisor(settings, rules, workers)
    except (UnsupportedSampler, ValueError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    try:
        return await _run(supervisor)
    finally:
        await supervisor.client.close()
        supervisor.release()


async def _run(supervisor: Supervisor) -> int:
    settings = supervisor.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning(
                "second %s: killing the workers without flushing", signal.Signals(signum).name
            )
            supervisor.kill_all()
            supervisor.release()
            os._exit(1)
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    def on_hangup() -> None:
        supervisor.signal_all(signal.SIGHUP)
        supervisor.security.watcher.check_now()
        if supervisor.agent is not None:
            supervisor.agent.controller.refresh()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    api = SupervisorApi(settings, supervisor)
    routes = []
    if supervisor.agent is not None:
        routes.append(web.post("/internal/membership", supervisor.agent.membership_event))
    control = ApiServer("", 0, routes, unix_path=supervisor_socket(supervisor.private_dir))
    try:
        await api.start()  # first: a taken API port fails start-up before anything else runs
        await control.start()
        if supervisor.agent is not None:
            await supervisor.agent.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        await api.stop()
        await control.stop()
        return 1
    for index in range(supervisor.workers):
        supervisor.spawn(index)
    if not await supervisor.wait_for("serving", START_TIMEOUT):
        log.error("the workers did not start; see their log lines above")
        supervisor.stopping = True
        supervisor.kill_all()
        if supervisor.agent is not None:
            await supervisor.agent.controller.leave()
            await supervisor.agent.stop()
        await api.stop()
        await control.stop()
        return 1
    if supervisor.agent is not None:
        supervisor.agent.run_shared_rules()
    public = supervisor.public
    log.info("listening for OTLP/gRPC on %s", public.otlp_grpc)
    log.info("listening for OTLP/HTTP on %s", public.otlp_http)
    if supervisor.owned_grpc:
        log.info("listening for routed OTLP/gRPC on %s", ", ".join(supervisor.owned_grpc))
    if supervisor.owned_http:
        log.info("listening for routed OTLP/HTTP on %s", ", ".join(supervisor.owned_http))
    if supervisor.cluster is not None:
        log.info(
            "listening for cluster peers on %s (advertised as %s)",
            ", ".join(supervisor.cluster.listen),
            supervisor.cluster.node,
        )
    log.info("serving the API on %s", api.address)
    log.info("%d worker processes, each owning a share of the traces", supervisor.workers)
    log_outputs(settings, supervisor.rules)
    api.serving = True
    supervisor.security.watcher.start()
    watcher = asyncio.create_task(supervisor.watch(), name="worker-watcher")
    scraper = asyncio.create_task(supervisor.scrape(), name="worker-scraper")
    await stop.wait()
    api.serving = False
    code = await supervisor.stop()
    watcher.cancel()
    scraper.cancel()
    if supervisor.agent is not None:
        await supervisor.agent.stop()
    await supervisor.security.watcher.stop()
    await api.stop()
    await control.stop()
    log.info("stopped")
    return code
