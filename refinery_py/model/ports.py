"""The seams between the edges (receive, export) and the pipeline, as small Protocols."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from refinery_py.model.batch import SpanBatch
from refinery_py.model.decision import KeptTrace
from refinery_py.model.handoff import Handoff


@dataclass(frozen=True, slots=True)
class Admission:
    """The pipeline's answer to a batch: taken, or refused with a hint when to retry.

    A refused batch was not buffered at all; receivers answer RESOURCE_EXHAUSTED / HTTP 429 with
    `retry_after` seconds and `message`, so the sender keeps the data and retries.
    """

    accepted: bool
    retry_after: float = 0.0
    message: str = ""


ACCEPTED = Admission(True)


class EncodedSpans(Protocol):
    """Spans ready to send: a serialized ExportTraceServiceRequest and how many spans it holds.

    Concatenated payloads form a valid request, so senders batch without re-encoding.
    """

    @property
    def payload(self) -> bytes: ...

    @property
    def span_count(self) -> int: ...


class ExportBacklog(Protocol):
    """How full an exporter's queue is: what admission weighs before taking more spans."""

    @property
    def queued_bytes(self) -> int: ...

    @property
    def max_bytes(self) -> int: ...


class SpanSink(Protocol):
    """Where receivers deliver decoded spans (the pipeline)."""

    def accept(self, batch: SpanBatch, protocol: str) -> Admission:
        """Take a batch (buffer it synchronously) or refuse all of it. `protocol` labels metrics."""
        ...

    def refusal(self) -> Admission | None:
        """The refusal any request would get now, whatever it holds (None: it may be taken).

        Asked before a body is read and decoded, so that refusing under overload costs next to
        nothing; `accept` may still refuse for what a batch holds."""
        ...


class ClusterSink(Protocol):
    """Where a peer door delivers what other cluster members send (the pipeline)."""

    def accept_forwarded(self, batch: SpanBatch, hops: int) -> Admission:
        """Take spans another member forwarded (`hops` requests so far), or refuse them all."""
        ...

    def adopt(self, handoff: Handoff, hops: int) -> Admission:
        """Take traces and decisions whose previous owner handed them over."""
        ...


class TraceExporter(Protocol):
    """Where kept traces go (an OTLP backend, the embedded store)."""

    def offer(self, trace: KeptTrace) -> None:
        """Queue a kept trace without blocking; if the queue is full, drop it and count the drop."""
        ...

    async def start(self) -> None:
        """Begin sending in the background."""
        ...

    async def close(self, timeout: float) -> None:
        """Send what is queued (giving up after `timeout` seconds, counting the rest), then stop."""
        ...
