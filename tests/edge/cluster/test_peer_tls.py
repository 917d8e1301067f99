"""The peer door over TLS, and every client of it: forwarding links, static members'
announcements, trace lookups. Members that trust the cluster's CA (and, with mutual TLS, present
a certificate from it) get through; plain text, unknown CAs, missing client certificates and a
wrong secret do not; `cluster.tls_server_name` lets one certificate serve every member."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from refinery_py.api.cluster_routes import owner_trace_lookup
from refinery_py.app.node import read_peer_body
from refinery_py.cluster.announce import announcer
from refinery_py.cluster.link import ForwardLedger, LinkTls, PeerLink
from refinery_py.cluster.peer_door import PeerDoor
from refinery_py.model import ACCEPTED, Admission, Handoff, SpanBatch
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.security.tls import ClientCertificate, ServerCertificate
from refinery_py.telemetry import Metrics
from tests.cluster_support import free_port, queued_spans
from tests.otlp_builders import request, span
from tests.tls_support import Authority, Pair

SECRET = "s3cret"


class Received:
    """The pipeline's side of a peer door: what arrived."""

    def __init__(self) -> None:
        self.batches: list[SpanBatch] = []

    def accept_forwarded(self, batch: SpanBatch, hops: int) -> Admission:
        self.batches.append(batch)
        return ACCEPTED

    def adopt(self, handoff: Handoff, hops: int) -> Admission:
        return ACCEPTED


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority(tmp_path, "cluster")


@pytest.fixture
def node_pair(authority: Authority) -> Pair:
    return authority.issue("node")


class Door:
    def __init__(self, name: str, received: Received, metrics: Metrics) -> None:
        self.name = name
        self.received = received
        self.metrics = metrics
        self.announcements: list[tuple[str, bool]] = []

    def rejected(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "refinery_requests_rejected_total", {"protocol": "peer", "reason": reason}
        )
        return value or 0.0


@asynccontextmanager
async def peer_door(
    certificate: ServerCertificate, *, client_cert: bool = False
) -> AsyncIterator[Door]:
    name = f"127.0.0.1:{free_port()}"
    received, metrics = Received(), Metrics()
    door = Door(name, received, metrics)

    async def membership(node: str, joined: bool) -> None:
        door.announcements.append((node, joined))

    async def lookup(request: web.Request) -> web.StreamResponse:
        return web.json_response({"trace_id": request.match_info["trace_id"], "here": name})

    server = PeerDoor(
        received,
        metrics=metrics,
        tcp=("127.0.0.1", int(name.rsplit(":", 1)[1])),
        unix_path=None,
        doors=(name,),
        worker=0,
        secret=SECRET,
        max_request_bytes=1 << 24,
        read_body=read_peer_body,
        lookup=lookup,
        on_membership=membership,
        ssl_context=certificate.server_context(client_cert=client_cert),
    )
    await server.start()
    try:
        yield door
    finally:
        await server.stop()


def spans() -> SpanBatch:
    return split_request(request(span(1, 1), span(1, 2, 1)).SerializeToString(), OriginInterner())


async def forward(
    door: str, tls: LinkTls | None, *, secret: str = SECRET, attempts: int = 3
) -> tuple[str, PeerLink, Metrics]:
    """Offer one batch to a link to `door`; 'delivered' once it is, else 'failing' after
    `attempts` failed attempts."""
    metrics = Metrics()
    link = PeerLink(door, ledger=ForwardLedger(metrics), secret=secret, max_bytes=1 << 24, tls=tls)
    link.offer(queued_spans(spans()))
    link.start()
    delivered = metrics.forward_spans.labels("delivered")
    try:
        for _ in range(2000):
            if delivered._value.get():
                return "delivered", link, metrics
            if link.failures >= attempts:
                return "failing", link, metrics
            await asyncio.sleep(0.01)
        raise AssertionError("the link neither delivered nor failed")
    finally:
        await link.close(0.1)


def links(authority: Authority, pair: Pair | None, server_name: str | None = None) -> LinkTls:
    client = ClientCertificate(
        authority.cert, pair.cert if pair else None, pair.key if pair else None, name="peers"
    )
    return LinkTls(client.context, server_name)


async def test_links_forward_over_tls_and_the_secret_is_still_required(
    authority: Authority, node_pair: Pair
) -> None:
    async with peer_door(ServerCertificate(node_pair.cert, node_pair.key)) as door:
        outcome, _, _ = await forward(door.name, links(authority, node_pair))
        assert outcome == "delivered"
        assert [batch.span_count for batch in door.received.batches] == [2]

        outcome, _, _ = await forward(door.name, links(authority, node_pair), secret="wrong")
        assert outcome == "failing"
        assert door.rejected("unauthorized") >= 3
        assert len(door.received.batches) == 1


async def test_plain_text_and_unknown_cas_do_not_get_through(
    authority: Authority, node_pair: Pair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = Authority(tmp_path, "stranger")
    async with peer_door(ServerCertificate(node_pair.cert, node_pair.key)) as door:
        outcome, _, _ = await forward(door.name, None)
        assert outcome == "failing"
        with caplog.at_level(logging.INFO, "refinery_py.cluster.link"):
            outcome, _, _ = await forward(door.name, links(stranger, None))
        assert outcome == "failing"
        assert door.received.batches == []
    assert "certificate verify failed" in caplog.text  # the log says why, not only "unreachable"


async def test_mutual_tls_needs_a_certificate_from_the_cluster_ca(
    authority: Authority, node_pair: Pair, tmp_path: Path
) -> None:
    certificate = ServerCertificate(node_pair.cert, node_pair.key, authority.cert)
    impostor = Authority(tmp_path, "impostor").issue("impostor")
    async with peer_door(certificate, client_cert=True) as door:
        outcome, _, _ = await forward(door.name, links(authority, None))
        assert outcome == "failing"
        outcome, _, _ = await forward(door.name, links(authority, impostor))
        assert outcome == "failing"
        assert door.received.batches == []
        outcome, _, _ = await forward(door.name, links(authority, node_pair))
        assert outcome == "delivered"


async def test_one_certificate_for_every_member_with_tls_server_name(
    authority: Authority,
) -> None:
    shared = authority.issue("shared", "refinery-peer.internal")  # names no member's address
    async with peer_door(ServerCertificate(shared.cert, shared.key)) as door:
        outcome, _, _ = await forward(door.name, links(authority, shared))
        assert outcome == "failing"  # checked against 127.0.0.1: no such name in it
        named = links(authority, shared, server_name="refinery-peer.internal")
        outcome, _, _ = await forward(door.name, named)
        assert outcome == "delivered"


async def test_announcements_and_trace_lookups_go_over_tls(
    authority: Authority, node_pair: Pair
) -> None:
    tls = links(authority, node_pair)
    async with peer_door(ServerCertificate(node_pair.cert, node_pair.key)) as door:
        await announcer("127.0.0.1:9", SECRET, tls)([door.name], "join")
        assert door.announcements == [("127.0.0.1:9", True)]
        await announcer("127.0.0.1:9", SECRET, None)([door.name], "leave")  # plain: not heard
        assert door.announcements == [("127.0.0.1:9", True)]

        async def here(_: web.Request) -> web.StreamResponse:
            return web.json_response({"here": "local"})

        answers = await ask_for_a_trace(door.name, here, tls)
        assert answers["here"] == door.name
        answers = await ask_for_a_trace(door.name, here, None)
        assert answers["here"] == "local"  # the owner could not be asked: looked up at home


async def ask_for_a_trace(
    owner: str,
    local: Callable[[web.Request], object],
    tls: LinkTls | None,
) -> dict[str, str]:
    lookup = owner_trace_lookup(local, lambda _: owner, SECRET, tls)  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_get("/api/v1/traces/{trace_id}", lookup)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/api/v1/traces/{'ab' * 16}") as response,
        ):
            assert response.status == 200
            document: dict[str, str] = await response.json()
            return document
    finally:
        await runner.cleanup()
