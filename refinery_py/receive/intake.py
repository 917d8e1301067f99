"""What happens to a request body once a transport has it: decode, admit, count, maybe refuse.

Both receivers hand every body to one `Intake`, which runs the decode funnel, offers the spans to
the pipeline, counts everything in the receive metrics and logs bad requests without flooding the
log. The transports only translate the `Receipt` into their status codes and bodies.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from refinery_py.model import SpanSink
from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.ingest import OriginInterner
from refinery_py.receive.decode import Encoding, decode_request
from refinery_py.receive.ingest_auth import ANONYMOUS, IngestAuth, Sender, TokenProblem
from refinery_py.receive.recorder import Recorder
from refinery_py.telemetry import Metrics
from refinery_py.telemetry.throttled_log import ThrottledLog

_log = logging.getLogger("refinery_py.receive")

GRPC = "grpc"
HTTP_PROTOBUF = "http_protobuf"
HTTP_JSON = "http_json"
HTTP = "http"
"""Protocol labels: the three doors spans come through, and HTTP before its encoding is known.
(Spans forwarded between cluster members arrive through `cluster.peer_door`.)"""

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""Larger request bodies (after decompression) are refused as too large."""

INVALID_ID = "invalid_id"
"""The `spans_rejected` reason for spans refused inside an accepted request."""


class Refusal(enum.Enum):
    """Why a whole request was refused; the value is the `requests_rejected` reason label."""

    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    OVERLOADED = "overloaded"
    MISSING_TOKEN = TokenProblem.MISSING.value
    INVALID_TOKEN = TokenProblem.INVALID.value


_TOKEN_REFUSALS = {
    TokenProblem.MISSING: Refusal.MISSING_TOKEN,
    TokenProblem.INVALID: Refusal.INVALID_TOKEN,
}


@dataclass(frozen=True, slots=True)
class Receipt:
    """The answer to one request.

    `refusal` is None when the spans were taken; then `rejected_spans` and `message` describe the
    spans refused inside it (OTLP partial success). Otherwise `message` says what is wrong and, for
    an overloaded pipeline, `retry_after` says when to try again (seconds).
    """

    refusal: Refusal | None
    message: str = ""
    rejected_spans: int = 0
    retry_after: float = 0.0


_TAKEN = Receipt(None)


class Intake:
    """The shared path from request body to the pipeline, with its metrics and logging.

    `protocol` is the label of the door a body came through: GRPC, HTTP_PROTOBUF or HTTP_JSON
    (or HTTP for a request refused before its encoding was known). It labels the metrics and is
    passed on to the pipeline.

    With `auth`, a transport first asks `admit` who the sender is (from the header `auth.header`)
    and passes the `Sender` to `take`; a sender's customer is written to the `customer_field`
    resource attribute of resources that lack it.
    """

    def __init__(
        self,
        sink: SpanSink,
        origins: OriginInterner,
        metrics: Metrics,
        log: ThrottledLog | None = None,
        recorder: Recorder | None = None,
        *,
        auth: IngestAuth | None = None,
        customer_field: str | None = None,
    ) -> None:
        self.auth = auth
        self._customer_field = customer_field
        self._sink = sink
        self._recorder = recorder
        self._origins = origins
        self._metrics = metrics
        self._log = log if log is not None else ThrottledLog(_log)
        doors = (GRPC, HTTP_PROTOBUF, HTTP_JSON)
        self._spans_received = {door: metrics.spans_received.labels(door) for door in doors}
        self._request_bytes = {door: metrics.request_bytes.labels(door) for door in doors}
        self._rejected_spans = metrics.spans_rejected.labels(INVALID_ID)
        # Every refusal's series exists from the start at 0: a series that first appears with a
        # refusal already counted gives rate() nothing, so that refusal would be missed by the
        # dashboards and by an alert on overload.
        for door in (*doors, HTTP):
            for refusal in Refusal:
                metrics.requests_rejected.labels(door, refusal.value)

    def admit(self, credential: str | None, protocol: str, peer: str = "") -> Sender | Receipt:
        """Who sent a request whose token header held `credential` (None when absent); a
        refusal's Receipt (counted and logged, with the sender's address `peer`) when the door
        requires a token and this one is missing or not accepted."""
        if self.auth is None:
            return ANONYMOUS
        found = self.auth.identify(credential)
        if isinstance(found, Sender):
            return found
        problem, message = found
        return self.refuse(protocol, _TOKEN_REFUSALS[problem], message, peer=peer)

    def take(
        self, body: bytes, encoding: Encoding, protocol: str, sender: Sender = ANONYMOUS
    ) -> Receipt:
        """Decode `body` and offer its spans to the pipeline; never raises for bad input."""
        self._request_bytes[protocol].inc(len(body))
        early = self.overloaded(protocol)
        if early is not None:
            return early
        tag = None
        if sender.customer and self._customer_field:
            tag = (self._customer_field, sender.customer)
        try:
            batch = decode_request(body, encoding, self._origins, tag)
        except MalformedPayload as exc:
            return self.refuse(protocol, Refusal.MALFORMED, str(exc))
        if batch.spans:
            admission = self._sink.accept(batch, protocol)
            if not admission.accepted:
                message = admission.message or "the pipeline is full; retry later"
                return self.refuse(protocol, Refusal.OVERLOADED, message, admission.retry_after)
            self._spans_received[protocol].inc(len(batch.spans))
            if self._recorder is not None:
                self._recorder.record(batch)
        if not batch.rejected:
            return _TAKEN
        self._rejected_spans.inc(batch.rejected)
        self._log.report(f"{protocol}:{INVALID_ID}", "%s: %s", protocol, batch.reject_message)
        return Receipt(None, batch.reject_message, batch.rejected)

    def overloaded(self, protocol: str) -> Receipt | None:
        """The refusal's receipt when the pipeline would refuse any request now: asked before a
        body is read and decoded, so a refusal under overload costs next to nothing."""
        admission = self._sink.refusal()
        if admission is None:
            return None
        message = admission.message or "the pipeline is full; retry later"
        return self.refuse(protocol, Refusal.OVERLOADED, message, admission.retry_after)

    def refuse(
        self,
        protocol: str,
        refusal: Refusal,
        message: str,
        retry_after: float = 0.0,
        *,
        peer: str = "",
    ) -> Receipt:
        """Count and log a whole request refused for `refusal`, and return its receipt."""
        self._metrics.requests_rejected.labels(protocol, refusal.value).inc()
        self._log.report(
            f"{protocol}:{refusal.value}",
            "%s request refused (%s)%s: %s",
            protocol,
            refusal.value,
            f" from {peer}" if peer else "",
            message,
        )
        return Receipt(refusal, message, retry_after=retry_after)
