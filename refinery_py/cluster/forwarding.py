"""Keep the spans this member owns, forward the rest to their owners.

Spans travel in `otlp.batch_codec`'s form: validated and split already, they need not be
re-framed as OTLP and split again. Forwarding is asynchronous: each peer has an exporter with a
bounded queue and retries, so a request is answered as soon as its owned spans are buffered and
the others are queued. When a peer's queue fills up (that peer is not keeping up, or is down),
the member pushes back on its own senders instead of dropping: `congested` turns the front
door's answer into a retry hint.
"""

from __future__ import annotations

from collections.abc import Mapping

from refinery_py.cluster.ownership import Ownership
from refinery_py.cluster.router import split_by_owner
from refinery_py.model import ForwardedSpans, PeerSink, SpanBatch
from refinery_py.otlp.batch_codec import encode_span_batch
from refinery_py.telemetry import Metrics


class Forwarder:
    """Splits incoming batches by owner; sends what others own to them."""

    def __init__(
        self, ownership: Ownership, peers: Mapping[int, PeerSink], metrics: Metrics
    ) -> None:
        missing = set(range(len(ownership.members))) - {ownership.self_index} - set(peers)
        if missing:
            raise ValueError(f"no peer sink for members {sorted(missing)}")
        self.ownership = ownership
        self._peers = dict(peers)
        self._sent = metrics.cluster_spans.labels("sent")

    @property
    def congested(self) -> bool:
        """Whether any peer's forwarding queue is filling up."""
        return any(peer.congested for peer in self._peers.values())

    def keep_local(self, batch: SpanBatch) -> SpanBatch:
        """Forward the spans other members own; return the part this member owns."""
        me = self.ownership.self_index
        parts = split_by_owner(batch, self.ownership)
        local = parts.pop(me, SpanBatch())
        for owner, part in parts.items():
            self._peers[owner].offer(ForwardedSpans(encode_span_batch(part), part.span_count))
            self._sent.inc(part.span_count)
        local.rejected, local.reject_message = batch.rejected, batch.reject_message
        return local
