"""One peer door's outgoing queue: spans and handoffs on their way to it, in order, with retries.

Forwarded spans were accepted at a front door, so a link never gives up on them while their
destination is a member: a failed request goes back to the head of the queue and is retried with
backoff (a peer's 429 or Retry-After sets the pause). Memory is what bounds a link: its queue
holds at most `max_bytes` of forwarded spans, and the forwarder refuses a front-door request
whose spans would not fit (the sender retries later) instead of taking and dropping them.
Handoffs are not bounded that way: they move spans that are already held, so refusing them
would not free anything.

When the destination stops being the owner of what is queued for it (it left the cluster, or its
node now has fewer workers), the forwarder `retire`s the link and re-routes what it held; a
request in flight then finishes first, and if it fails its spans are re-routed too. Spans are
never re-sent after a success, so nothing arrives twice.

Each span the link is given ends in one outcome of `refinery_cluster_forward_spans_total`:
delivered, rejected (the peer refused the body as malformed; never expected), kept_locally (its
owner could not be reached when this node shut down, so it was decided here) or
dropped_shutdown (cut off in flight by the shutdown) — or it is re-routed and ends in another
link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from refinery_py.cluster.body_file import BODY_HEADER, IDLE_RELEASE, BodyFile
from refinery_py.cluster.handoff_codec import encode_handoff
from refinery_py.cluster.router import Picked
from refinery_py.cluster.stop_tasks import cancel_and_wait
from refinery_py.model import Handoff, SpanBatch
from refinery_py.otlp.batch_codec import decode_span_batches, encode_selected
from refinery_py.otlp.ingest import OriginInterner
from refinery_py.telemetry import Metrics
from refinery_py.telemetry.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

SPANS_PATH = "/peer/v1/spans"
HANDOFF_PATH = "/peer/v1/handoff"
NODE_PATH = "/peer/v1/node"
HOPS_HEADER = "X-Refinery-Hops"
WORKERS_HEADER = "X-Refinery-Workers"
"""On every peer-door response: the answering node's worker doors, comma-separated, in order."""
UNIX_PREFIX = "unix:"
"""A door address naming a Unix socket (the worker processes of one node talk this way)."""

REQUEST_MAX_BYTES = 8 << 20
"""Queued items are joined into requests of about this size (a larger single item goes alone)."""
LINGER_BYTES = 2 << 20
"""Forwarded spans stop waiting for company (`linger`) once this much is queued."""
UNREACHABLE_GRACE = 2.0
"""At shutdown, how long a link keeps trying a peer that is failing before it gives up."""
_RETRY_INITIAL = 0.05
_RETRY_MAX = 2.0


@dataclass(slots=True)
class Outgoing:
    """One item in a link's queue: forwarded spans (with their hop count) or a handoff.

    Forwarded spans wait in the queue encoded (`record`, in `otlp.batch_codec`'s form): encoded
    as they are routed, while the request that brought them is still in the CPU's caches, they
    cost a tenth of what the same copy costs after waiting `linger` for company (measured by
    bench/forward_cost.py). The rare paths that need them as spans again (re-routing when the
    owners change, shutdown) decode the record.
    """

    record: bytes | None = None
    handoff: Handoff | None = None
    hops: int = 1
    size: int = 0
    """The spans' own bytes (what `queue_max_bytes` bounds)."""
    spans: int = 0
    queued_at: float = 0.0
    """When it was first queued (time.monotonic()): how long its spans have waited."""

    @classmethod
    def of_selection(cls, batch: SpanBatch, picked: Picked, hops: int) -> Outgoing:
        """The spans of `batch` that `picked` names (see `router.split_off`), encoded now."""
        return cls(
            record=encode_selected(batch, picked.spans, picked.roots),
            hops=hops,
            size=picked.size,
            spans=len(picked.spans),
        )

    def batch(self, origins: OriginInterner) -> SpanBatch | None:
        """The forwarded spans as a batch again (None for a handoff)."""
        return None if self.record is None else decode_span_batches(self.record, origins)

    @classmethod
    def of_handoff(cls, handoff: Handoff, hops: int) -> Outgoing:
        size = sum(sum(map(len, t.spans)) for t in handoff.traces) + 24 * len(handoff.decisions)
        return cls(handoff=handoff, hops=hops, size=size, spans=handoff.span_count)


@dataclass(slots=True)
class _LinkState:
    queue: deque[Outgoing] = field(default_factory=deque)
    bytes: int = 0
    spans: int = 0
    in_flight: list[Outgoing] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LinkTls:
    """How this node reaches other members' peer doors when they speak TLS."""

    context: Callable[[], ssl.SSLContext]
    """The client context for new connections (a new one when the certificate files change)."""
    server_name: str | None = None
    """The name every peer certificate must carry; None: the host of the door's address."""


def request_body(data: bytes) -> aiohttp.BytesPayload:
    """`data` as a request body, without the ResourceWarning aiohttp gives every bytes body
    over 1 MiB (for fear of a slow write: the event loop's transport takes it whole, without
    blocking). Where warnings are errors, as in the test suite, the warning failed the send."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        return aiohttp.BytesPayload(data)


def body_parts(items: list[Outgoing]) -> list[bytes]:
    """One request's body, in parts: items of one kind (as `PeerLink` takes them), their
    records in order."""
    if items[0].handoff is not None:
        return [encode_handoff(item.handoff) for item in items if item.handoff]
    return [item.record for item in items if item.record is not None]


def encode_items(items: list[Outgoing]) -> bytes:
    """One request's body, joined (see `body_parts`)."""
    return b"".join(body_parts(items))


def door_url(door: str, path: str, tls: LinkTls | None) -> str:
    """The URL of `path` at a peer door: a Unix socket's, a TLS door's or a plain one's."""
    if door.startswith(UNIX_PREFIX):
        return f"http://localhost{path}"
    return f"{'https' if tls is not None else 'http'}://{door}{path}"


class ForwardLedger:
    """The forwarding metrics, with their label children bound once."""

    def __init__(self, metrics: Metrics) -> None:
        outcomes = ("delivered", "rejected", "kept_locally", "dropped_shutdown")
        self.outcome = {o: metrics.forward_spans.labels(o) for o in outcomes}
        self.rerouted = metrics.forward_rerouted_spans
        self.queue_spans = metrics.forward_queue_spans
        self.queue_bytes = metrics.forward_queue_bytes
        self.bodies = {via: metrics.sibling_bodies.labels(via) for via in ("file", "socket")}


class PeerLink:
    """Sends what is queued for one peer door (`host:port`, or `unix:PATH`)."""

    def __init__(
        self,
        door: str,
        *,
        ledger: ForwardLedger,
        secret: str | None,
        max_bytes: int,
        on_workers: Callable[[str, tuple[str, ...]], None] | None = None,
        on_orphans: Callable[[str, list[Outgoing]], None] | None = None,
        rng: random.Random | None = None,
        tls: LinkTls | None = None,
        linger: float = 0.0,
        body_file: BodyFile | None = None,
    ) -> None:
        self.door = door
        self._body_file = body_file
        """Where bodies for a sibling worker go instead of the socket (see `body_file`)."""
        self._linger = linger
        # Sibling workers' Unix sockets are plain; other members' doors speak TLS when set.
        self._tls = None if door.startswith(UNIX_PREFIX) else tls
        self.max_bytes = max_bytes
        self._ledger = ledger
        self._headers = {"Content-Type": "application/octet-stream"}
        if secret:
            self._headers["Authorization"] = f"Bearer {secret}"
        self._on_workers = on_workers
        self._on_orphans = on_orphans
        self._rng = rng or random.Random()
        self._state = _LinkState()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._retired = False
        self._closing = False
        self._log = ThrottledLog(log, interval=10.0)
        self.failures = 0
        """Consecutive failed attempts (0 while the peer answers)."""
        self._failing_since: float | None = None
        self._unintroduced = on_workers is not None and not door.startswith(UNIX_PREFIX)
        """The node's worker doors are still to be learned (`_ask_for_workers`)."""

    # ---- the queue ----------------------------------------------------------------------------

    @property
    def queued_bytes(self) -> int:
        return self._state.bytes

    @property
    def queued_spans(self) -> int:
        return self._state.spans

    def waited(self, now: float) -> float:
        """How long the oldest item still to be delivered (in flight or queued) has waited."""
        state = self._state
        oldest = state.in_flight[0] if state.in_flight else state.queue[0] if state.queue else None
        return now - oldest.queued_at if oldest is not None and oldest.queued_at else 0.0

    def has_room(self, size: int) -> bool:
        return self._state.bytes + size <= self.max_bytes

    def offer(self, item: Outgoing) -> None:
        """Queue an item (the caller checked `has_room` for forwarded spans)."""
        if not item.queued_at:
            item.queued_at = time.monotonic()
        state = self._state
        state.queue.append(item)
        state.bytes += item.size
        state.spans += item.spans
        self._ledger.queue_spans.inc(item.spans)
        self._ledger.queue_bytes.inc(item.size)
        if len(state.queue) == 1 or state.bytes >= LINGER_BYTES:
            # Only an idle sender, or one letting spans gather, waits for this: the first needs
            # work, the second needs to know the request is full. Waking the task for every
            # front-door request's share cost two workers 10-20 µs per request.
            self._wakeup.set()

    def _take(self) -> list[Outgoing]:
        """The next request's items: consecutive items of one kind (and hop count)."""
        state = self._state
        first = state.queue.popleft()
        items = [first]
        size = first.size
        while state.queue and size < REQUEST_MAX_BYTES:
            candidate = state.queue[0]
            if (candidate.handoff is None) != (first.handoff is None) or (
                candidate.hops != first.hops
            ):
                break
            if size + candidate.size > REQUEST_MAX_BYTES:
                break
            items.append(state.queue.popleft())
            size += candidate.size
        return items

    def _settle(self, items: list[Outgoing]) -> None:
        """Items leave the queue's accounting (delivered, rejected, dropped or re-routed)."""
        state = self._state
        for item in items:
            state.bytes -= item.size
            state.spans -= item.spans
            self._ledger.queue_spans.dec(item.spans)
            self._ledger.queue_bytes.dec(item.size)

    def retire_queue(self) -> list[Outgoing]:
        """Take back what is queued (not a request in flight) to route it again."""
        state = self._state
        items = list(state.queue)
        state.queue.clear()
        self._settle(items)
        return items

    def retire(self) -> list[Outgoing]:
        """Stop sending new requests; return what is queued for re-routing. A request in flight
        finishes; if it fails, its items go to `on_orphans`."""
        self._retired = True
        items = self.retire_queue()
        self._wakeup.set()
        return items

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"peer-link {self.door}")

    async def close(self, timeout: float) -> list[Outgoing]:
        """Send what is queued, then stop; return what could not be sent.

        Waits up to `timeout` seconds, but only `UNREACHABLE_GRACE` once the peer has been
        failing that long (a member that is gone will not come back during a shutdown). A
        request cut off in flight may or may not have arrived: its spans are counted
        dropped_shutdown. Queued items never left, so they are handed back to the caller, which
        keeps them (nothing accepted is dropped for want of its owner).
        """
        self._closing = True
        self._wakeup.set()
        task = self._task
        if task is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not task.done() and loop.time() < deadline:
                failing = self._failing_since
                if failing is not None and loop.time() - failing > UNREACHABLE_GRACE:
                    break
                await asyncio.wait({task}, timeout=0.1)
            if not task.done():
                await cancel_and_wait([task])
        state = self._state
        in_flight, queued = state.in_flight, list(state.queue)
        state.queue.clear()
        state.in_flight = []
        self._settle([*in_flight, *queued])
        lost = sum(item.spans for item in in_flight)
        if lost:
            self._ledger.outcome["dropped_shutdown"].inc(lost)
            log.warning(
                "peer %s: %d forwarded spans were cut off in flight at shutdown", self.door, lost
            )
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._body_file is not None:
            self._body_file.close()
        return queued

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector: aiohttp.BaseConnector
            if self.door.startswith(UNIX_PREFIX):
                connector = aiohttp.UnixConnector(path=self.door[len(UNIX_PREFIX) :])
            else:
                connector = aiohttp.TCPConnector(limit=4)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=60, sock_connect=2),
            )
        return self._session

    def _url(self, path: str) -> str:
        return door_url(self.door, path, self._tls)

    # ---- sending ------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self._unintroduced:
                await self._ask_for_workers()
            await self._send_all()
        finally:
            if self._retired:
                # Nobody closes a retired link: it ends when its last request is settled.
                if self._session is not None:
                    await self._session.close()
                    self._session = None
                if self._body_file is not None:
                    self._body_file.close()

    async def _send_all(self) -> None:
        state = self._state
        while True:
            if not state.queue:
                if self._closing or self._retired:
                    return
                self._wakeup.clear()
                await self._idle()
                continue
            if self._unintroduced:
                await self._ask_for_workers()
                if not state.queue:
                    continue  # learning the doors re-routed it all to the owning workers
            await self._gather()
            if not state.queue:
                continue  # retired while it waited: what was queued went to be re-routed
            items = self._take()
            state.in_flight = items
            try:
                outcome, pause = await self._send(items)
            finally:
                state.in_flight = []
            if outcome == "retry":
                if self._retired:
                    self._settle(items)
                    if self._on_orphans is not None:
                        self._on_orphans(self.door, items)
                    continue
                state.queue.extendleft(reversed(items))
                self.failures += 1
                if self._failing_since is None:
                    self._failing_since = asyncio.get_running_loop().time()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        # Close and retire wake the loop early: retire to re-route, close to
                        # give up waiting only when its own timeout says so.
                        while not self._retired:
                            self._wakeup.clear()
                            await self._wakeup.wait()
                continue
            self.failures = 0
            self._failing_since = None
            self._settle(items)
            self._ledger.outcome[outcome].inc(sum(item.spans for item in items))

    async def _idle(self) -> None:
        """Wait for something to send; past IDLE_RELEASE, let the body file's pages go."""
        body_file = self._body_file
        if body_file is None or not body_file.holding:
            await self._wakeup.wait()
            return
        try:
            async with asyncio.timeout(IDLE_RELEASE):
                await self._wakeup.wait()
        except TimeoutError:
            body_file.release()

    async def _ask_for_workers(self) -> None:
        """Learn the node's worker doors before the first request, so that even the first spans
        go to their owning worker in one hop (what was queued here is re-routed to them). A
        failure is not an error: it is asked again before the next request, and every answer
        to a forwarding request names the doors too."""
        tls = self._tls
        try:
            async with self._client().get(
                self._url(NODE_PATH),
                headers=self._headers,
                ssl=tls.context() if tls is not None else True,
                server_hostname=tls.server_name if tls is not None else None,
            ) as reply:
                workers = reply.headers.get(WORKERS_HEADER) if reply.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, OSError):
            return
        self._learned(workers)

    def _learned(self, workers: str | None) -> None:
        if workers and self._on_workers is not None:
            self._unintroduced = False
            self._on_workers(self.door, tuple(w for w in workers.split(",") if w))

    async def _gather(self) -> None:
        """Let forwarded spans wait up to `linger` after the oldest was queued, so that one
        request carries what several front-door requests brought: a request costs both ends
        about what hundreds of spans do. Handoffs, spans queued again after a failed attempt
        (their wait is over), and a link that is closing or retired do not wait."""
        state = self._state
        while state.queue and state.bytes < LINGER_BYTES and not (self._closing or self._retired):
            first = state.queue[0]
            wait = first.queued_at + self._linger - time.monotonic()
            if first.handoff is not None or wait <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()

    async def _send(self, items: list[Outgoing]) -> tuple[str, float]:
        """("delivered" | "rejected" | "retry", pause before the retry)."""
        first = items[0]
        path = HANDOFF_PATH if first.handoff is not None else SPANS_PATH
        headers = {**self._headers, HOPS_HEADER: str(first.hops)}
        data = self._body(body_parts(items), headers)
        pause = min(_RETRY_MAX, _RETRY_INITIAL * 2 ** min(self.failures, 10))
        pause = self._rng.uniform(pause / 2, pause)
        tls = self._tls
        try:
            async with self._client().post(
                self._url(path),
                data=data,
                headers=headers,
                ssl=tls.context() if tls is not None else True,
                server_hostname=tls.server_name if tls is not None else None,
            ) as reply:
                status = reply.status
                text = (await reply.read())[:300].decode(errors="replace")
                workers = reply.headers.get(WORKERS_HEADER)
                retry_after = reply.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            if BODY_HEADER in headers and self._body_file is not None:
                self._body_file.discard()  # the door may read it yet: never write it again
            self._log.report(
                "unreachable",
                "peer %s unreachable (%s); %d spans wait for it",
                self.door,
                _reason(error),
                self.queued_spans + sum(item.spans for item in items),
            )
            return "retry", pause
        self._learned(workers)
        if status == 200:
            return "delivered", 0.0
        if status in (400, 413):
            log.error("peer %s refused %d forwarded spans: %s", self.door, first.spans, text)
            return "rejected", 0.0
        if status == 409 and self._body_file is not None:
            self._body_file.discard()  # the door could not read it: send again from a new one
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                pause = min(_RETRY_MAX * 5, max(pause, float(retry_after)))
        self._log.report(
            f"status {status}",
            "peer %s answered %d (%s); retrying",
            self.door,
            status,
            text,
        )
        return "retry", pause

    def _body(self, parts: list[bytes], headers: dict[str, str]) -> aiohttp.BytesPayload:
        """The request's body: empty, with `parts` in the body file named in `headers`, or, with
        no body file or none that takes them, `parts` joined."""
        body_file = self._body_file
        if body_file is not None:
            named = body_file.write(parts)
            if named is not None:
                headers[BODY_HEADER] = named
                self._ledger.bodies["file"].inc()
                return request_body(b"")
            self._ledger.bodies["socket"].inc()
            self._log.report(
                "body file",
                "peer %s: the body file could not be written (%s); sending bodies over the socket",
                self.door,
                body_file.failure,
            )
        return request_body(b"".join(parts))


def _reason(error: BaseException) -> str:
    """What went wrong, in a few words: a TLS failure says why (an unknown CA, a name that does
    not match), other errors their kind."""
    if isinstance(error, aiohttp.ClientSSLError):
        return f"{type(error).__name__}: {error}"
    return type(error).__name__
