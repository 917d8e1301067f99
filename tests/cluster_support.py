"""Small helpers shared by the cluster tests."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable

from refinery_py.cluster.link import Outgoing
from refinery_py.model import SpanBatch
from refinery_py.otlp.batch_codec import encode_span_batch

_LOW, _HIGH = 20000, 32000
"""Below Linux's ephemeral range (32768-60999): no outgoing connection takes these meanwhile."""
_taken: set[int] = set()


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports free right now (a node of several workers listens
    on its peer port + i), never handed out before in this test run."""
    rng = random.Random()
    for _ in range(1000):
        base = rng.randrange(_LOW, _HIGH - count)
        candidates = range(base, base + count)
        if _taken.intersection(candidates) or not all(map(_bindable, candidates)):
            continue
        _taken.update(candidates)
        return base
    raise RuntimeError(f"no {count} consecutive free ports")


def free_port() -> int:
    """A port free right now (a static member list must name ports before the members start)."""
    return free_ports(1)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


KEEP_ALL = (
    "RulesVersion: 2\nSamplers:\n  __default__:\n    DeterministicSampler:\n      SampleRate: 1\n"
)
"""Rules that keep every trace: whatever is lost or split shows."""


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait (polling the event loop) until `condition()` is true; fail after `timeout` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def queued_spans(batch: SpanBatch, hops: int = 1) -> Outgoing:
    """`batch` as a link queues forwarded spans."""
    return Outgoing(
        record=encode_span_batch(batch), hops=hops, size=batch.byte_size, spans=batch.span_count
    )
