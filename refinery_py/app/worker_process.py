"""A worker process of a node: its entry point, and its two-phase shutdown on signals.

The supervisor starts it (multiprocessing's spawn method) with its settings, rules and role.
SIGTERM ends the first phase (stop accepting, deliver what goes to sibling workers), SIGUSR1 the
second (decide what is left, flush, exit); SIGHUP reloads the rules and changed certificate and
token files. A worker whose supervisor is gone shuts itself down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

import prometheus_client

from refinery_py.app.node import Node
from refinery_py.app.process import tune_allocator, tune_collector
from refinery_py.app.role import WorkerRole
from refinery_py.config.rules_spec import RulesSpec
from refinery_py.config.settings import Settings
from refinery_py.telemetry.logs import configure_logging

log = logging.getLogger("refinery_py")

DRAIN_TIMEOUT = 60.0
"""Seconds the supervisor waits for every worker to stop accepting and flush its forwards."""


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
    loop.add_signal_handler(signal.SIGHUP, node.hangup)
    orphan_watch = asyncio.create_task(_exit_when_orphaned(stop_intake, finish))
    try:
        await node.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        await node.stop_intake()
        await node.finish()
        return 1
    tune_collector()
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
