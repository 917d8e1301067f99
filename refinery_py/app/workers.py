"""`serve --workers N`: one process per core, each owning the traces hashed to it.

The supervisor (`supervise`) holds the node's ports (see `ports`), runs its cluster membership,
starts N worker processes and serves the node's API. Every worker listens on the node's public
OTLP ports (SO_REUSEPORT: the kernel spreads connections), decides the traces it owns and
forwards other spans to their owner: a sibling worker through its Unix socket, another node's
worker through that node's peer door. Start-up fails, loudly, if a port cannot be had or a worker
exits before it serves. A worker that dies later is restarted; its peers queue what they forward
to it until it is back.

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
import sys
import tempfile
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path

import prometheus_client
from aiohttp import web

from refinery_py.api.server import ApiServer
from refinery_py.app.membership import member_source
from refinery_py.app.node import Node, log_outputs
from refinery_py.app.ports import PortReservations
from refinery_py.app.process import tune_allocator
from refinery_py.app.role import WorkerRole, cluster_role, supervisor_socket
from refinery_py.app.rules_admin import RULES_POLL_INTERVAL
from refinery_py.app.supervisor_api import SupervisorApi
from refinery_py.app.worker_client import WorkerClient
from refinery_py.cluster.membership import ClusterController, ClusterView
from refinery_py.cluster.rules_sync import RulesSync
from refinery_py.config.addresses import HostPort
from refinery_py.config.problems import ConfigError
from refinery_py.config.rules_file import RulesFile
from refinery_py.config.rules_spec import RulesSpec
from refinery_py.config.settings import Settings
from refinery_py.decide.sampler import UnsupportedSampler
from refinery_py.model.addresses import join_host_port, split_host_port
from refinery_py.telemetry.logs import configure_logging
from refinery_py.telemetry.metrics import MembershipMetrics

log = logging.getLogger("refinery_py")

START_TIMEOUT = 60.0
"""Seconds workers get to start listening before the node gives up."""
DRAIN_TIMEOUT = 60.0
"""Seconds the supervisor waits for every worker to stop accepting and flush its forwards."""
EXIT_TIMEOUT = 120.0
"""Seconds workers get to decide, flush and exit once told to finish."""
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


# ---- the worker process -------------------------------------------------------------------


def run_worker(settings: Settings, rules: RulesSpec, role: WorkerRole) -> None:
    """The worker process's entry point (started by `multiprocessing` with the spawn method)."""
    # Ctrl-C reaches every process of the group; only the supervisor acts on it, so a worker is
    # never told twice to stop (which would mean: exit at once, without flushing).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_allocator()
    configure_logging(settings.logging.level, settings.logging.format, f"worker-{role.index}")
    try:
        import uvloop  # noqa: PLC0415

        code = uvloop.run(_worker_main(settings, rules, role))
    except ImportError:
        code = asyncio.run(_worker_main(settings, rules, role))
    sys.exit(code)


async def _worker_main(settings: Settings, rules: RulesSpec, role: WorkerRole) -> int:
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    node = Node(settings, rules, role=role)
    stop_intake, finish = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop_intake.set)
    loop.add_signal_handler(signal.SIGUSR1, finish.set)
    loop.add_signal_handler(signal.SIGHUP, node.rules.reload, "SIGHUP")
    orphan_watch = asyncio.create_task(_exit_when_orphaned(stop_intake, finish))
    try:
        await node.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        await node.stop_intake()
        await node.finish()
        return 1
    await stop_intake.wait()
    await node.stop_intake()
    patience = DRAIN_TIMEOUT + settings.cluster.drain_timeout + 30.0
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finish.wait(), patience)
    await node.finish()
    orphan_watch.cancel()
    return 0


async def _exit_when_orphaned(stop_intake: asyncio.Event, finish: asyncio.Event) -> None:
    """A worker whose supervisor died (killed, crashed) shuts itself down cleanly rather than
    holding the node's ports with nobody to restart or stop it."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("the supervisor is gone: shutting down")
    stop_intake.set()
    finish.set()


# ---- the supervisor -----------------------------------------------------------------------


class Supervisor:
    """Starts, watches, restarts and stops the workers of one node; runs its membership."""

    def __init__(self, settings: Settings, rules: RulesSpec, workers: int) -> None:
        self.settings = settings
        self.rules = rules
        self.workers = workers
        self.private_dir = tempfile.mkdtemp(prefix="refinery-")
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
        except BaseException:
            self.release()
            raise
        self.client = WorkerClient(self.private_dir, workers)
        self.registry = prometheus_client.CollectorRegistry()
        self.controller: ClusterController | None = None
        if self.cluster is not None:
            self.controller = ClusterController(
                member_source(settings, self.cluster.node),
                self_node=self.cluster.node,
                source_name=settings.cluster.source,
                on_view=self._new_view,
                metrics=MembershipMetrics(self.registry),
            )
        self.rules_sync: RulesSync | None = None
        self.rules_digest = rules.digest
        if self.controller is not None and settings.cluster.redis is not None:
            redis = settings.cluster.redis
            self.rules_sync = RulesSync(redis.url, name=redis.name, node=self.controller.self_node)
        self._context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess | None] = [None] * workers
        self.restarts = 0
        self.stopping = False
        self._view_version = 0
        self._acked = [0] * workers
        self._view_pushed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pusher: asyncio.Task[None] | None = None

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
        return self.controller.view if self.controller is not None else None

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
        self._acked[index] = self._view_version  # it starts with the current view

    def alive(self) -> int:
        return sum(1 for p in self.processes if p is not None and p.is_alive())

    def signal_all(self, signum: int) -> None:
        for process in self.processes:
            if process is not None and process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def kill_all(self) -> None:
        self.signal_all(signal.SIGKILL)

    # ---- views ----------------------------------------------------------------------------

    def _new_view(self, _: ClusterView) -> None:
        self._view_version += 1
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.create_task(self._push_views(), name="view-pusher")

    async def _push_views(self) -> None:
        """Until every live worker has the newest view (a restarting one gets it at spawn)."""
        while True:
            version, view = self._view_version, self.view
            behind = [
                i
                for i, process in enumerate(self.processes)
                if process is not None and process.is_alive() and self._acked[i] < version
            ]
            if not behind or view is None:
                self._view_pushed.set()
                return
            self._view_pushed.clear()
            results = await asyncio.gather(*(self.client.push_view(i, view) for i in behind))
            for index, ok in zip(behind, results, strict=True):
                if ok:
                    self._acked[index] = max(self._acked[index], version)
            if not all(results):
                await asyncio.sleep(0.2)

    async def membership_event(self, request: web.Request) -> web.Response:
        """A worker passes on a static member's announcement."""
        document = await request.json()
        if self.controller is not None:
            self.controller.member_event(str(document["node"]), bool(document["joined"]))
        return web.json_response({"noted": True})

    # ---- rules shared by the cluster (Redis) ---------------------------------------------

    async def share_rule_changes(self) -> None:
        """Watch the rules file the workers watch; share each valid change with the cluster."""
        source = Path(self.rules.source) if self.rules.source else None
        if self.rules_sync is None or source is None or not source.is_file():
            return
        watched = RulesFile(source)
        while True:
            await asyncio.sleep(RULES_POLL_INTERVAL)
            if not watched.changed():
                continue
            try:
                spec = watched.load()
            except ConfigError:
                continue  # the workers reject it and say why
            if spec.digest != self.rules_digest:
                self.rules_digest = spec.digest
                await self.rules_sync.publish(spec.text, spec.digest)

    def rules_arrived(self, text: str, digest: str, member: str) -> None:
        """Another member's rules: every worker switches to them."""
        self.rules_digest = digest
        task = asyncio.create_task(self._push_rules(text, digest, member))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push_rules(self, text: str, digest: str, member: str) -> None:
        document = {"text": text, "digest": digest, "member": member}
        await asyncio.gather(
            *(
                self.client.request(i, "POST", "/internal/rules", json=document)
                for i in range(self.workers)
            )
        )

    async def views_delivered(self, timeout: float) -> None:
        if self._pusher is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pusher), timeout)

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

    async def watch(self) -> None:
        """Restart workers that exit while the node is serving."""
        failures = [0] * len(self.processes)
        while not self.stopping:
            await asyncio.sleep(0.5)
            for index, process in enumerate(self.processes):
                if self.stopping or process is None or process.is_alive():
                    continue
                delay = RESTART_BACKOFF[min(failures[index], len(RESTART_BACKOFF) - 1)]
                log.error(
                    "worker %d exited with code %s; its buffered traces are lost; "
                    "restarting in %gs",
                    index,
                    process.exitcode,
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
        if self.controller is not None:
            await self.controller.leave()
            await self.views_delivered(10.0)
        self.signal_all(signal.SIGTERM)
        if not await self.wait_for("intake stopped", DRAIN_TIMEOUT):
            log.warning("not every worker flushed its forwarded spans in time; finishing anyway")
        await self.drain()
        self.signal_all(signal.SIGUSR1)
        deadline = time.monotonic() + EXIT_TIMEOUT
        for process in self.processes:
            if process is not None:
                await asyncio.to_thread(process.join, max(0.0, deadline - time.monotonic()))
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
            os._exit(1)
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    def on_hangup() -> None:
        supervisor.signal_all(signal.SIGHUP)
        if supervisor.controller is not None:
            supervisor.controller.refresh()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    api = SupervisorApi(settings, supervisor)
    control = ApiServer(
        "",
        0,
        [web.post("/internal/membership", supervisor.membership_event)],
        unix_path=supervisor_socket(supervisor.private_dir),
    )
    try:
        await api.start()  # first: a taken API port fails start-up before anything else runs
        await control.start()
        if supervisor.controller is not None:
            await supervisor.controller.start()
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
        if supervisor.controller is not None:
            await supervisor.controller.leave()
        await api.stop()
        await control.stop()
        return 1
    sharing: asyncio.Task[None] | None = None
    if supervisor.rules_sync is not None:
        supervisor.rules_sync.start(supervisor.rules_arrived, lambda: supervisor.rules_digest)
        sharing = asyncio.create_task(supervisor.share_rule_changes(), name="rules-sharing")
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
    watcher = asyncio.create_task(supervisor.watch(), name="worker-watcher")
    await stop.wait()
    api.serving = False
    code = await supervisor.stop()
    watcher.cancel()
    if sharing is not None:
        sharing.cancel()
    if supervisor.rules_sync is not None:
        await supervisor.rules_sync.stop()
    await api.stop()
    await control.stop()
    log.info("stopped")
    return code
