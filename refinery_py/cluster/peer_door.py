"""A worker's peer door: where other members (and sibling workers) send spans, handoffs, queries.

HTTP, served on the TCP address other nodes reach this worker at and, for the sibling workers
of its own node, on a Unix socket:

- `POST /peer/v1/spans`: span batch records (`otlp.batch_codec`), `X-Refinery-Hops` requests so
  far; 200, 400 (malformed), 401 (wrong secret) or 429 with Retry-After (overloaded).
- `POST /peer/v1/handoff`: handoff records (`handoff_codec`); never refused for load.
- `GET /peer/v1/node`: `{"node", "worker", "workers"}`, this node's worker doors.
- `GET /peer/v1/traces/{trace_id}`: the trace lookup of the API, answered by this worker.
- `POST /peer/v1/membership`: `{"node", "event": "join"|"leave"}`, a static member coming or
  going (see `membership.StaticMembers`).

A sibling worker may leave the body of a spans or handoff request in a file of the node's private
directory and send only `X-Refinery-Body: NAME:LENGTH` (`body_file`); a file that cannot be read
whole is answered 409, and the sender sends again from a new file.

Every answer carries `X-Refinery-Workers`, so senders learn which door owns what. With a shared
secret (`cluster.secret`) every request must carry it as a bearer token; without one the door
also checks that forwarded spans from other nodes are valid OTLP (the sending member checked them
at its front door, but an unauthenticated door must not trust that). Sibling workers of the
node, on the Unix socket, are trusted: they checked what they forward. With `ssl_context` the
TCP door speaks TLS; the Unix socket between a node's workers never does.
"""

from __future__ import annotations

import hmac
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from refinery_py.cluster.announce import MEMBERSHIP_PATH
from refinery_py.cluster.body_file import (
    BODY_HEADER,
    BodyFileUnreadable,
    named_body,
    read_body_file,
)
from refinery_py.cluster.handoff_codec import decode_handoffs
from refinery_py.cluster.link import HOPS_HEADER, WORKERS_HEADER
from refinery_py.model import ClusterSink
from refinery_py.otlp.batch_codec import decode_span_batches
from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.frame import frame_spans
from refinery_py.otlp.ingest import OriginInterner, validate_request
from refinery_py.telemetry import Metrics
from refinery_py.telemetry.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

PEER = "peer"
"""The protocol label of spans and requests at the peer door."""
REFUSALS = ("unauthorized", "malformed", "overloaded")
"""The reasons the peer door refuses a request for (`refinery_requests_rejected_total`)."""

TraceLookup = Callable[[web.Request], Awaitable[web.StreamResponse]]
BodyReader = Callable[[web.Request, int], Awaitable[bytes]]
"""Reads a request's whole body, raising web.HTTPRequestEntityTooLarge past the limit (bytes)."""
MembershipEvent = Callable[[str, bool], Awaitable[None]]
"""A static member announced that it joined (True) or left (False)."""


class PeerDoor:
    """Serves one worker's peer door; `doors` are its node's advertised worker doors."""

    def __init__(
        self,
        sink: ClusterSink,
        *,
        metrics: Metrics,
        tcp: tuple[str, int] | None,
        unix_path: Path | None,
        doors: tuple[str, ...],
        worker: int,
        secret: str | None,
        max_request_bytes: int,
        read_body: BodyReader,
        lookup: TraceLookup | None = None,
        on_membership: MembershipEvent | None = None,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        body_files: bool = False,
    ) -> None:
        self._sink = sink
        self._body_dir = unix_path.parent if body_files and unix_path is not None else None
        """Where sibling workers leave request bodies (`body_file`); None: they send them."""
        self._read_body = read_body
        self._ssl_context = ssl_context
        self._metrics = metrics
        self._tcp = tcp
        self._unix_path = unix_path
        self._reuse_port = reuse_port
        self.doors = doors
        self._worker = worker
        self._secret = secret.encode() if secret else None
        self._max_request_bytes = max_request_bytes
        self._lookup = lookup
        self._on_membership = on_membership
        self._origins = OriginInterner()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._log = ThrottledLog(log)
        self._received = metrics.cluster_spans.labels("received")
        self._last_request = time.monotonic()
        self._bytes = metrics.request_bytes.labels(PEER)
        # From zero, as the front doors' refusals: a first refusal must show as an increase.
        for reason in REFUSALS:
            metrics.requests_rejected.labels(PEER, reason)

    async def start(self) -> None:
        app = web.Application(client_max_size=self._max_request_bytes, middlewares=[self._common])
        app.router.add_post("/peer/v1/spans", self._spans)
        app.router.add_post("/peer/v1/handoff", self._handoff)
        app.router.add_get("/peer/v1/node", self._node)
        app.router.add_get("/peer/v1/traces/{trace_id}", self._trace)
        app.router.add_post(MEMBERSHIP_PATH, self._membership)
        # Members never compress; aiohttp inflating a corrupt stream inside a handler answered
        # 500 with a traceback, so bodies are taken as sent (a compressed one is not a record).
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=0.1,
            auto_decompress=False,
        )
        await runner.setup()
        try:
            if self._tcp is not None:
                host, port = self._tcp
                tcp = web.TCPSite(
                    runner,
                    host,
                    port,
                    reuse_port=self._reuse_port or None,
                    ssl_context=self._ssl_context,
                )
                await tcp.start()
                self.port = _bound_port(tcp) or port
            if self._unix_path is not None:
                self._unix_path.unlink(missing_ok=True)
                await web.UnixSite(runner, str(self._unix_path)).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def idle_seconds(self) -> float:
        """Seconds since the last request came in."""
        return time.monotonic() - self._last_request

    # ---- requests -------------------------------------------------------------------------

    @web.middleware
    async def _common(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self._secret is not None and not self._authorized(request):
            self._refused("unauthorized", "a peer sent a request without the cluster secret")
            response: web.StreamResponse = web.json_response(
                {"error": "the cluster secret is missing or wrong"}, status=401
            )
        else:
            self._last_request = time.monotonic()
            try:
                response = await handler(request)
            except web.HTTPRequestEntityTooLarge:
                response = web.json_response(
                    {"error": "peer request larger than the door accepts"}, status=413
                )
            except BodyFileUnreadable as exc:
                response = web.json_response({"error": str(exc)}, status=409)
        response.headers[WORKERS_HEADER] = ",".join(self.doors)
        return response

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        assert self._secret is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), self._secret)

    def _must_validate(self, request: web.Request) -> bool:
        """Whether forwarded spans are checked again as OTLP: not from a sibling worker (the Unix
        socket is reachable only from this node, in a directory only its user can enter) nor
        from a member that knows the cluster secret; both validated them at their front door."""
        return self._secret is None and not _from_sibling(request)

    async def _body(self, request: web.Request) -> bytes:
        """The request's body: sent with it, or left in a file by a sibling worker."""
        named = request.headers.get(BODY_HEADER)
        if named is None:
            body = await self._read_body(request, self._max_request_bytes)
        elif self._body_dir is None or not _from_sibling(request):
            raise MalformedPayload(f"{BODY_HEADER} is taken only from this node's workers")
        else:
            name, length = named_body(named)
            if length > self._max_request_bytes:
                raise web.HTTPRequestEntityTooLarge(
                    max_size=self._max_request_bytes, actual_size=length
                )
            body = read_body_file(self._body_dir, name, length)
        self._bytes.inc(len(body))
        return body

    def _hops(self, request: web.Request) -> int:
        try:
            return max(1, int(request.headers.get(HOPS_HEADER, "1")))
        except ValueError:
            return 1

    async def _spans(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            batch = decode_span_batches(body, self._origins)
            if self._must_validate(request) and batch.spans:
                validate_request(frame_spans(batch.spans, batch.origins))
        except MalformedPayload as exc:
            self._refused("malformed", str(exc))
            return web.json_response({"error": str(exc)}, status=400)
        admission = self._sink.accept_forwarded(batch, self._hops(request))
        if not admission.accepted:
            self._refused("overloaded", admission.message)
            return web.json_response(
                {"error": admission.message},
                status=429,
                headers={"Retry-After": str(max(1, round(admission.retry_after)))},
            )
        self._received.inc(batch.span_count)
        return web.json_response({"accepted": batch.span_count})

    async def _handoff(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            handoff = decode_handoffs(body, self._origins)
            spans = [s for trace in handoff.traces for s in trace.spans]
            if self._must_validate(request) and spans:
                origins = [o for trace in handoff.traces for o in trace.origins]
                validate_request(frame_spans(spans, origins))
        except MalformedPayload as exc:
            self._refused("malformed", str(exc))
            return web.json_response({"error": str(exc)}, status=400)
        self._sink.adopt(handoff, self._hops(request))
        return web.json_response(
            {"traces": len(handoff.traces), "decisions": len(handoff.decisions)}
        )

    async def _node(self, _: web.Request) -> web.Response:
        node = self.doors[0] if self.doors else ""
        return web.json_response({"node": node, "worker": self._worker, "workers": self.doors})

    async def _membership(self, request: web.Request) -> web.Response:
        try:
            document = await request.json()
            node, event = str(document["node"]), document["event"]
            if event not in ("join", "leave"):
                raise ValueError(event)
        except (ValueError, KeyError, TypeError):
            return web.json_response(
                {"error": 'expected {"node": "host:port", "event": "join"|"leave"}'}, status=400
            )
        if self._on_membership is not None:
            await self._on_membership(node, event == "join")
        return web.json_response({"noted": True})

    async def _trace(self, request: web.Request) -> web.StreamResponse:
        if self._lookup is None:
            return web.json_response({"error": "no trace lookup here"}, status=404)
        return await self._lookup(request)

    def _refused(self, reason: str, message: str) -> None:
        self._metrics.requests_rejected.labels(PEER, reason).inc()
        self._log.report(f"peer:{reason}", "peer request refused (%s): %s", reason, message)


def _from_sibling(request: web.Request) -> bool:
    """Whether `request` came over the Unix socket (from a worker of this node)."""
    transport = request.transport
    return transport is not None and isinstance(transport.get_extra_info("sockname"), str)


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp exposes the bound socket only here
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else 0
