"""The composition root: builds a node from its settings and runs it, as one process or several.

`node.Node` wires every component of one process; `workers.supervise` runs a node as one worker
process per core. Only this package constructs concrete edge classes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import prometheus_client

from refinery_py.app.node import Node
from refinery_py.app.ports import PortReservations
from refinery_py.app.process import machine_memory, tune_allocator, tune_collector
from refinery_py.app.role import WorkerRole, cluster_role
from refinery_py.app.rules import KEEP_EVERYTHING, build_engine, resolve_rules
from refinery_py.config.rules_spec import RulesSpec
from refinery_py.config.settings import Settings
from refinery_py.decide.sampler import UnsupportedSampler

__all__ = [
    "KEEP_EVERYTHING",
    "Node",
    "build_engine",
    "machine_memory",
    "resolve_rules",
    "serve",
    "tune_allocator",
]

log = logging.getLogger("refinery_py")


async def serve(settings: Settings, rules: RulesSpec, workers: int = 1) -> int:
    """Run a node until SIGTERM or SIGINT; a second signal exits at once. Returns the exit code."""
    if workers > 1:
        from refinery_py.app.workers import supervise  # noqa: PLC0415

        return await supervise(settings, rules, workers)
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    reservations = PortReservations()
    try:
        role = WorkerRole(0, 1, cluster=cluster_role(settings, 1, reservations.reserve))
        node = Node(settings, rules, role=role)
    except (UnsupportedSampler, ValueError, OSError) as exc:
        reservations.close()
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

    def on_hangup() -> None:
        node.hangup()
        if node.controller is not None:
            node.controller.refresh()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        await node.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        await node.stop()
        return 1
    finally:
        reservations.close()  # the node holds its ports itself now (or failed)
    tune_collector()
    await stop.wait()
    await node.stop()
    return 0
