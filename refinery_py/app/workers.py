"""`serve --workers N`: one process per core, each owning the traces hashed to it.

The supervisor (this module's `supervise`) picks the ports, starts N worker processes and serves
the node's API. Every worker listens on the node's public OTLP ports (SO_REUSEPORT: the kernel
spreads connections), decides the traces it owns and forwards the other spans to their owner's
private OTLP/HTTP door — the same mechanism as between the nodes of a cluster. A worker that dies
is restarted; its buffered traces are lost (and logged), its peers queue what they forward to it
until it is back.

Shutdown has two phases so that no span on its way between workers is lost: on SIGTERM every
worker stops accepting and flushes what it forwards; once all have, the supervisor sends SIGUSR1
and each decides its buffered traces, flushes its exports and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess

import aiohttp
import prometheus_client

from refinery_py.app.node import Node, WorkerRole, log_outputs
from refinery_py.app.process import tune_allocator
from refinery_py.app.supervisor_api import SupervisorApi
from refinery_py.config.addresses import HostPort
from refinery_py.config.rules_spec import RulesSpec
from refinery_py.config.settings import Settings
from refinery_py.decide.sampler import UnsupportedSampler
from refinery_py.model.addresses import join_host_port, split_host_port
from refinery_py.telemetry.logs import configure_logging

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
    loop.add_signal_handler(signal.SIGHUP, node.reload_rules, "SIGHUP")
    orphan_watch = asyncio.create_task(_exit_when_orphaned(stop_intake, finish))
    try:
        await node.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        await node.stop()
        return 1
    await stop_intake.wait()
    await node.stop_intake()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finish.wait(), DRAIN_TIMEOUT)
    await node.stop_rest()
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


def free_port(host: str) -> int:
    """A port the OS says is free on `host` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _concrete(address: str) -> str:
    """`address` with port 0 replaced by a free port, so every worker binds the same one."""
    host, port = split_host_port(address)
    return join_host_port(host, port or free_port(host))


class Supervisor:
    """Starts, watches, restarts and stops the workers of one node."""

    def __init__(self, settings: Settings, rules: RulesSpec, workers: int) -> None:
        listen = settings.listen
        self.public = replace(
            listen,
            otlp_grpc=HostPort(_concrete(listen.otlp_grpc)),
            otlp_http=HostPort(_concrete(listen.otlp_http)),
        )
        self.members = tuple(f"127.0.0.1:{free_port('127.0.0.1')}" for _ in range(workers))
        self.apis = tuple(f"127.0.0.1:{free_port('127.0.0.1')}" for _ in range(workers))
        self.settings = settings
        self.rules = rules
        self._context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess | None] = [None] * workers
        self.restarts = 0
        self.stopping = False

    def worker_settings(self, index: int) -> Settings:
        listen = replace(self.public, api=HostPort(self.apis[index]))
        return replace(self.settings, listen=listen)

    def spawn(self, index: int) -> None:
        process = self._context.Process(
            target=run_worker,
            args=(self.worker_settings(index), self.rules, WorkerRole(index, self.members)),
            name=f"refinery-worker-{index}",
            daemon=False,
        )
        process.start()
        self.processes[index] = process

    def alive(self) -> int:
        return sum(1 for p in self.processes if p is not None and p.is_alive())

    def signal_all(self, signum: int) -> None:
        for process in self.processes:
            if process is not None and process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    async def worker_state(self, session: aiohttp.ClientSession, index: int) -> str:
        """The worker's readiness reason ("serving", "intake stopped", ...) or "unreachable"."""
        try:
            async with session.get(f"http://{self.apis[index]}/ready") as response:
                document = await response.json()
                return str(document.get("reason", ""))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return "unreachable"

    async def wait_for(self, session: aiohttp.ClientSession, state: str, timeout: float) -> bool:
        """Until every live worker reports `state` (dead ones count as done); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = [
                index
                for index, process in enumerate(self.processes)
                if process is not None and process.is_alive()
            ]
            states = await asyncio.gather(*(self.worker_state(session, i) for i in pending))
            if all(s == state for s in states):
                return True
            if state == "serving" and any(
                p is not None and not p.is_alive() for p in self.processes
            ):
                return False
            await asyncio.sleep(0.1)
        return False

    async def watch(self, session: aiohttp.ClientSession) -> None:
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

    async def stop(self, session: aiohttp.ClientSession) -> int:
        """Two-phase shutdown; the exit code is 0 when every worker exited cleanly."""
        self.stopping = True
        self.signal_all(signal.SIGTERM)
        if not await self.wait_for(session, "intake stopped", DRAIN_TIMEOUT):
            log.warning("not every worker flushed its forwarded spans in time; finishing anyway")
        self.signal_all(signal.SIGUSR1)
        deadline = time.monotonic() + EXIT_TIMEOUT
        for process in self.processes:
            if process is not None:
                await asyncio.to_thread(process.join, max(0.0, deadline - time.monotonic()))
        codes = [p.exitcode for p in self.processes if p is not None]
        return 0 if all(code == 0 for code in codes) else 1

    def kill_all(self) -> None:
        self.signal_all(signal.SIGKILL)


async def supervise(settings: Settings, rules: RulesSpec, workers: int) -> int:
    """Run a node as `workers` processes until SIGTERM or SIGINT. Returns the exit code."""
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        # Build one node in this process first: a rules or config problem is reported once,
        # here, instead of by every worker.
        Node(settings, rules)
    except (UnsupportedSampler, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    supervisor = Supervisor(settings, rules, workers)
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

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, supervisor.signal_all, signal.SIGHUP)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for index in range(workers):
            supervisor.spawn(index)
        if not await supervisor.wait_for(session, "serving", START_TIMEOUT):
            log.error("the workers did not start; see their log lines above")
            supervisor.stopping = True
            supervisor.kill_all()
            return 1
        api = SupervisorApi(settings, supervisor, session)
        try:
            await api.start()
        except OSError as exc:
            log.error("cannot start: %s", exc)
            await supervisor.stop(session)
            return 1
        public = supervisor.public
        log.info("listening for OTLP/gRPC on %s", public.otlp_grpc)
        log.info("listening for OTLP/HTTP on %s", public.otlp_http)
        log.info("serving the API on %s", join_host_port(api.host, api.port))
        log.info("%d worker processes, each owning a share of the traces", workers)
        log_outputs(settings, rules)
        watcher = asyncio.create_task(supervisor.watch(session), name="worker-watcher")
        await stop.wait()
        api.draining = True
        code = await supervisor.stop(session)
        watcher.cancel()
        await api.stop()
    log.info("stopped")
    return code
