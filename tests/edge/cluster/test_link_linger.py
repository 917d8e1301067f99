"""A peer link lets forwarded spans gather (`linger`) so one request carries several batches.

The peer is a real HTTP server on loopback that records each request's span-batch records.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from refinery_py.cluster.link import LINGER_BYTES, ForwardLedger, Outgoing, PeerLink
from refinery_py.model import Decision, HandedOffDecision, Handoff, SendReason
from refinery_py.otlp.batch_codec import MAGIC, decode_span_batches
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.telemetry import Metrics
from tests.cluster_support import free_port, queued_spans, until
from tests.otlp_builders import request, span


class Peer:
    """Answers every request 200 and keeps, per request, the number of span-batch records and
    the trace numbers of its spans."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, list[int]]] = []
        self.paths: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.paths.append(request.path)
        if request.path.endswith("/spans"):
            batch = decode_span_batches(body, OriginInterner())
            self.requests.append((body.count(MAGIC), [t[-1] for t in batch.trace_ids]))
        return web.Response(text="ok")


@pytest.fixture
async def peer() -> AsyncIterator[tuple[str, Peer]]:
    recorder = Peer()
    app = web.Application(client_max_size=1 << 26)
    app.router.add_post("/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"127.0.0.1:{port}", recorder
    finally:
        await runner.cleanup()


def batch(trace: int, spans: int = 2, attribute: str = "") -> Outgoing:
    body = request(
        *(span(trace, n + 1, attrs={"pad": attribute} if attribute else None) for n in range(spans))
    ).SerializeToString()
    return queued_spans(split_request(body, OriginInterner()))


def link_to(door: str, linger: float) -> tuple[PeerLink, Metrics]:
    metrics = Metrics()
    link = PeerLink(
        door, ledger=ForwardLedger(metrics), secret=None, max_bytes=1 << 28, linger=linger
    )
    return link, metrics


async def offer_three(link: PeerLink) -> None:
    """Batches of traces 1, 2 and 3 (two spans each), 10 ms apart, to a started link."""
    link.start()
    for trace in (1, 2, 3):
        link.offer(batch(trace))
        await asyncio.sleep(0.01)


async def test_batches_offered_within_the_linger_go_in_one_request(peer: tuple[str, Peer]) -> None:
    door, recorder = peer
    link, _ = link_to(door, linger=0.5)
    try:
        await offer_three(link)
        await until(lambda: recorder.requests)
        assert recorder.requests == [(3, [1, 1, 2, 2, 3, 3])]
    finally:
        assert await link.close(1.0) == []


async def test_without_a_linger_the_first_batch_goes_alone(peer: tuple[str, Peer]) -> None:
    door, recorder = peer
    link, _ = link_to(door, linger=0.0)
    try:
        await offer_three(link)
        await until(lambda: sum(len(ids) for _, ids in recorder.requests) == 6)
        assert recorder.requests[0] == (1, [1, 1])
        assert len(recorder.requests) >= 2
    finally:
        await link.close(1.0)


async def test_enough_waiting_bytes_end_the_linger(peer: tuple[str, Peer]) -> None:
    door, recorder = peer
    link, _ = link_to(door, linger=300.0)
    link.start()
    try:
        big = batch(1, spans=5, attribute="x" * 60_000)
        assert big.size * 2 < LINGER_BYTES < big.size * 40
        trace = 1
        while link.queued_bytes < LINGER_BYTES:
            link.offer(batch(trace, spans=5, attribute="x" * 60_000))
            trace += 1
            await asyncio.sleep(0)
        await until(lambda: recorder.requests)  # long before the 300 s linger
        assert recorder.requests[0][0] == trace - 1
    finally:
        await link.close(1.0)


async def test_closing_sends_what_lingers_at_once(peer: tuple[str, Peer]) -> None:
    door, recorder = peer
    link, metrics = link_to(door, linger=300.0)
    link.start()
    link.offer(batch(7))
    await asyncio.sleep(0.05)
    assert recorder.requests == []  # still gathering
    assert await link.close(5.0) == []
    assert recorder.requests == [(1, [7, 7])]
    assert metrics.forward_spans.labels("delivered")._value.get() == 2


async def test_a_link_retired_while_it_lingers_hands_its_queue_back_and_ends(
    peer: tuple[str, Peer],
) -> None:
    door, recorder = peer
    link, _ = link_to(door, linger=300.0)
    link.start()
    link.offer(batch(7))
    await asyncio.sleep(0.05)
    returned = link.retire()
    assert [item.spans for item in returned] == [2]
    task = link._task
    assert task is not None
    await asyncio.wait_for(task, 5.0)  # ends, and without an error
    assert task.exception() is None
    assert recorder.requests == []
    await link.close(1.0)


async def test_handoffs_do_not_linger(peer: tuple[str, Peer]) -> None:
    door, recorder = peer
    link, _ = link_to(door, linger=300.0)
    link.start()
    try:
        decision = HandedOffDecision(bytes(16), Decision(True, 1, "rule"), SendReason.GOT_ROOT, 0.0)
        link.offer(Outgoing.of_handoff(Handoff([], [decision]), 1))
        await until(lambda: recorder.paths)
        assert recorder.paths == ["/peer/v1/handoff"]
    finally:
        await link.close(1.0)
