"""Keep the spans this worker owns; send the rest to their owner's door, in one hop.

A span's destination is its owning node (see `ownership`) and, inside it, the owning worker:
a sibling worker of this node is reached through its Unix socket, a worker of another node
through the TCP door that node advertises for it. Another node's worker doors are learned from
its answers (every peer-door response lists them); until they are known, spans go to the node's
advertised address (its first worker), which passes them on to the right worker inside the node.

Forwarding is asynchronous: each door has a `PeerLink` with a bounded queue and retries, so a
request is answered as soon as its owned spans are buffered and the others are queued. When a
link has no room for a request's spans (that peer is slow or down) the whole request is refused
— the sender retries later — rather than taken and dropped.

When the owners change (a new member list, or a node's worker doors change), what is still queued
is routed again by the new owners, so nothing waits for a member that is gone.

Hops. Spans from a front door travel with hop count 1. A peer door that gets spans it does not
own (the sender did not know the node's workers, or the two members' views of the cluster
differ for a moment) passes them on once more (hop 2); at hop 2 they are kept where they are and
reported as misplaced, to be handed to their owner once the views agree, so a disagreement can
never bounce spans back and forth.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from refinery_py.cluster.body_file import BodyFile
from refinery_py.cluster.link import UNIX_PREFIX, ForwardLedger, LinkTls, Outgoing, PeerLink
from refinery_py.cluster.ownership import Doors, Placement
from refinery_py.cluster.router import split_off
from refinery_py.model import HandedOffDecision, HandedOffTrace, Handoff, SpanBatch
from refinery_py.otlp.ingest import OriginInterner
from refinery_py.telemetry import Metrics

log = logging.getLogger(__name__)

MAX_HOPS = 2
LOCAL = ""
"""The destination of spans this worker owns."""


@dataclass(frozen=True, slots=True)
class Routed:
    """What `route` made of a batch: the part to buffer here, or why nothing was taken."""

    local: SpanBatch
    refused: str = ""
    misplaced: frozenset[bytes] = frozenset()
    """Trace IDs kept here although another member owns them (hop limit reached)."""


class Forwarder:
    """Routes batches and handoffs by owner for one worker; owns the links to other doors.

    `sibling_doors[i]` is worker i's private door on this node (its Unix socket);
    `advertised_doors` are this node's worker doors as other nodes reach them, sent with every
    peer-door answer.
    """

    def __init__(
        self,
        placement: Placement,
        *,
        sibling_doors: tuple[str, ...],
        metrics: Metrics,
        secret: str | None = None,
        queue_max_bytes: int = 64 << 20,
        max_wait: float = 0.5,
        linger: float = 0.0,
        tls: LinkTls | None = None,
        body_dir: Path | None = None,
    ) -> None:
        self._max_wait = max_wait
        self._body_dir = body_dir
        """Where links to sibling workers leave request bodies (`body_file`); None: they send
        them over the socket."""
        self._worker = placement.self_worker
        self._linger = linger
        self._tls = tls
        self.sibling_doors = sibling_doors
        self._metrics = metrics
        self._secret = secret
        self._queue_max_bytes = queue_max_bytes
        self._ledger = ForwardLedger(metrics)
        self._origins = OriginInterner()
        """For the queued spans it takes back to route again (see `Outgoing`)."""
        self._links: dict[str, PeerLink] = {}
        self._directory: dict[str, tuple[str, ...]] = {}
        """Worker doors of other nodes, learned from their answers."""
        self._doors = Doors(placement, sibling_doors, self._directory)
        self._sent = metrics.cluster_spans.labels("sent")
        self._relayed = metrics.relayed_spans
        self._handed = {
            direction: (
                metrics.handoff_traces.labels(direction),
                metrics.handoff_spans.labels(direction),
                metrics.handoff_decisions.labels(direction),
            )
            for direction in ("out", "in")
        }
        self._started = False
        self._closed = False
        self.on_own_handoff: Callable[[Handoff], None] | None = None
        """Where re-routed items that turned out to be ours go (the pipeline adopts them)."""

    # ---- where a trace goes -----------------------------------------------------------------

    @property
    def placement(self) -> Placement:
        """The owners routed by (changed with `set_placement` only)."""
        return self._doors.placement

    def destination(self, trace_id: bytes) -> str:
        """The door that owns `trace_id`: LOCAL, a sibling's socket, or another node's door."""
        return self._doors(trace_id)

    def owns(self, trace_id: bytes) -> bool:
        return self.destination(trace_id) == LOCAL

    # ---- spans --------------------------------------------------------------------------------

    def route(self, batch: SpanBatch, hops: int = 0) -> Routed:
        """Queue the spans others own (unless a queue lacks room: then nothing is taken)."""
        local, parts = split_off(batch, self._doors, LOCAL)
        if not parts:
            return Routed(local)
        local.rejected, local.reject_message = batch.rejected, batch.reject_message
        if hops >= MAX_HOPS:
            misplaced = {batch.trace_ids[i] for part in parts.values() for i in part.spans}
            return Routed(batch, misplaced=frozenset(misplaced))
        links = {door: self._link(door) for door in parts}
        now = time.monotonic()
        for door, part in parts.items():
            link = links[door]
            if not link.has_room(part.size):
                return Routed(
                    SpanBatch(),
                    refused=f"overloaded: spans for the member at {door} are queueing up",
                )
            waited = link.waited(now)
            if waited > self._max_wait:
                # Its owner decides a trace send_delay after its root came; spans that queue
                # longer than this would reach it too late, and be dropped or kept as late
                # spans whatever the rest of their trace says. Refusing brings the sender back
                # once the queue has moved.
                return Routed(
                    SpanBatch(),
                    refused=f"overloaded: spans for the member at {door} have waited "
                    f"{waited:.1f} s to be delivered",
                )
        forwarded = self._relayed if hops else self._sent
        for door, part in parts.items():
            links[door].offer(Outgoing.of_selection(batch, part, hops + 1))
            forwarded.inc(len(part.spans))
        return Routed(local)

    # ---- handoffs -----------------------------------------------------------------------------

    def hand_off(
        self,
        traces: Iterable[HandedOffTrace],
        decisions: Iterable[HandedOffDecision],
        hops: int = 0,
    ) -> Handoff:
        """Send traces and decisions to their owners; return the part that is ours after all.

        At the hop limit nothing is sent on: all of it is returned, to be kept here.
        """
        if hops >= MAX_HOPS:
            return Handoff(list(traces), list(decisions))
        local, sent = self._send_handoff(traces, decisions, hops)
        traces_out, spans_out, decisions_out = self._handed["out"]
        for handoff in sent.values():
            traces_out.inc(len(handoff.traces))
            spans_out.inc(handoff.span_count)
            decisions_out.inc(len(handoff.decisions))
        return local

    def _send_handoff(
        self,
        traces: Iterable[HandedOffTrace],
        decisions: Iterable[HandedOffDecision],
        hops: int,
    ) -> tuple[Handoff, dict[str, Handoff]]:
        """Queue traces and decisions for their owners' doors: (ours, what went to each door)."""
        by_door: dict[str, Handoff] = {}
        for trace in traces:
            by_door.setdefault(self.destination(trace.trace_id), Handoff()).traces.append(trace)
        for decision in decisions:
            door = self.destination(decision.trace_id)
            by_door.setdefault(door, Handoff()).decisions.append(decision)
        local = by_door.pop(LOCAL, Handoff())
        for door, handoff in by_door.items():
            link = self._link(door)
            for chunk in _chunks(handoff):
                link.offer(Outgoing.of_handoff(chunk, hops + 1))
        return local, by_door

    def count_received_handoff(self, handoff: Handoff) -> None:
        traces_in, spans_in, decisions_in = self._handed["in"]
        traces_in.inc(len(handoff.traces))
        spans_in.inc(handoff.span_count)
        decisions_in.inc(len(handoff.decisions))

    # ---- owners change ------------------------------------------------------------------------

    def set_placement(self, placement: Placement) -> Handoff:
        """Route by `placement` from now on, and re-route what is queued.

        Returns what was queued here but is now this worker's own (a handoff to adopt).
        """
        self._doors = Doors(placement, self.sibling_doors, self._directory)
        mine = self._reroute()
        self._introduce()
        return mine

    def learn_workers(self, door: str, doors: tuple[str, ...]) -> Handoff:
        """A node answered from `door` and listed its worker doors: route to them directly."""
        node = doors[0] if doors else door
        if node not in self.placement.nodes or self._directory.get(node) == doors:
            return Handoff()
        self._directory[node] = doors
        return self._reroute()

    def _reroute(self) -> Handoff:
        wanted = {d for d in self._links if self._still_a_destination(d)}
        taken: list[tuple[str, list[Outgoing]]] = []
        for door, link in list(self._links.items()):
            if door in wanted:
                taken.append((door, link.retire_queue()))
            else:
                taken.append((door, link.retire()))
                del self._links[door]
        mine = Handoff()
        for door, items in taken:
            ours = self._requeue(items, origin=door)
            mine.traces.extend(ours.traces)
            mine.decisions.extend(ours.decisions)
        return mine

    def _still_a_destination(self, door: str) -> bool:
        if door in self.sibling_doors:
            return True
        nodes = self.placement.nodes
        return door in nodes or any(door in self._directory.get(node, ()) for node in nodes)

    def _requeue(self, items: list[Outgoing], origin: str) -> Handoff:
        """Send items taken from the link to `origin` again, by the current owners; return the
        part that is now ours. Only what goes to another door counts as re-routed (and a
        handoff is not counted as handed out twice)."""
        mine = Handoff()
        moved = 0
        for item in items:
            batch = item.batch(self._origins)
            if batch is not None:
                ours, others = split_off(batch, self._doors, LOCAL)
                if ours.span_count:
                    _spans_as_traces(ours, mine)
                for door, picked in others.items():
                    self._link(door).offer(Outgoing.of_selection(batch, picked, item.hops))
                    if door != origin:
                        moved += len(picked.spans)
            elif item.handoff is not None:
                handoff = item.handoff
                local, sent = self._send_handoff(handoff.traces, handoff.decisions, item.hops - 1)
                mine.traces.extend(local.traces)
                mine.decisions.extend(local.decisions)
                moved += sum(part.span_count for door, part in sent.items() if door != origin)
        self._ledger.rerouted.inc(moved)
        return mine

    def _on_orphans(self, door: str, items: list[Outgoing]) -> None:
        """A retired link's request failed: its items go to their current owners."""
        mine = self._requeue(items, origin=door)
        if mine and self.on_own_handoff is not None:
            self.on_own_handoff(mine)

    # ---- links --------------------------------------------------------------------------------

    def _link(self, door: str) -> PeerLink:
        link = self._links.get(door)
        if link is None:
            link = self._links[door] = PeerLink(
                door,
                ledger=self._ledger,
                secret=self._secret,
                max_bytes=self._queue_max_bytes,
                on_workers=self._learned,
                on_orphans=self._on_orphans,
                tls=self._tls,
                linger=self._linger,
                body_file=self._body_file(door),
            )
            if self._started:
                link.start()
        return link

    def _body_file(self, door: str) -> BodyFile | None:
        if self._body_dir is None or not door.startswith(UNIX_PREFIX):
            return None
        return BodyFile(self._body_dir, self._worker)

    def _learned(self, door: str, doors: tuple[str, ...]) -> None:
        mine = self.learn_workers(door, doors)
        if mine and self.on_own_handoff is not None:
            self.on_own_handoff(mine)

    def links(self) -> Mapping[str, PeerLink]:
        return self._links

    def start(self) -> None:
        self._started = True
        for link in self._links.values():
            link.start()
        self._introduce()

    def _introduce(self) -> None:
        """Open a link to every member whose worker doors are not known yet: a link asks the
        node for them first, so spans reach the owning worker in one hop from the start."""
        if not self._started or self._closed:
            return
        for node in self.placement.nodes:
            if node and node != self.placement.self_node and node not in self._directory:
                self._link(node)

    async def close_links(self, doors: Iterable[str], timeout: float) -> Handoff:
        """Deliver what is queued for `doors` (up to `timeout`), then stop those links.

        Returns what could not be delivered, to be kept and decided here.
        """
        links = [self._links.pop(door) for door in doors if door in self._links]
        leftovers = await asyncio.gather(*(link.close(timeout) for link in links))
        kept = Handoff()
        for item in (item for items in leftovers for item in items):
            batch = item.batch(self._origins)
            if batch is not None:
                _spans_as_traces(batch, kept)
            elif item.handoff is not None:
                kept.traces.extend(item.handoff.traces)
                kept.decisions.extend(item.handoff.decisions)
        if kept.traces:
            self._ledger.outcome["kept_locally"].inc(kept.span_count)
            log.warning(
                "%d spans of %d traces could not reach their owner before shutdown; "
                "deciding them here",
                kept.span_count,
                len(kept.traces),
            )
        return kept

    async def close(self, timeout: float) -> Handoff:
        """Deliver what is queued (up to `timeout`), then stop every link; returns what could
        not be delivered."""
        self._closed = True
        return await self.close_links(list(self._links), timeout)

    @property
    def queued_spans(self) -> int:
        return sum(link.queued_spans for link in self._links.values())


HANDOFF_CHUNK_BYTES = 4 << 20
"""A handoff is sent in requests of about this size: a node's whole buffer share can be large."""


def _chunks(handoff: Handoff) -> Iterable[Handoff]:
    chunk = Handoff(decisions=handoff.decisions)
    size = 0
    for trace in handoff.traces:
        trace_size = sum(map(len, trace.spans))
        if chunk.traces and size + trace_size > HANDOFF_CHUNK_BYTES:
            yield chunk
            chunk, size = Handoff(), 0
        chunk.traces.append(trace)
        size += trace_size
    if chunk:
        yield chunk


def _spans_as_traces(part: SpanBatch, handoff: Handoff) -> None:
    """Forwarded spans that turned out to be ours, as handed-off traces (arrived just now)."""
    by_trace: dict[bytes, HandedOffTrace] = {}
    for index, trace_id in enumerate(part.trace_ids):
        trace = by_trace.get(trace_id)
        if trace is None:
            trace = by_trace[trace_id] = HandedOffTrace(trace_id, [], [], -1, 0.0, None)
            handoff.traces.append(trace)
        if index in part.root_positions and trace.root_index < 0:
            trace.root_index = len(trace.spans)
            trace.root_age = 0.0
        trace.spans.append(part.spans[index])
        trace.origins.append(part.origins[index])
