"""Delivering one export request: attempt, retry with backoff, and count how it ended."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from refinery_py.export.backoff import RetryPolicy, pause
from refinery_py.export.batch import ExportRequest
from refinery_py.export.outcomes import ExportLedger, RequestOutcome, SpanOutcome
from refinery_py.export.transport import SendResult, Transport, Verdict
from refinery_py.telemetry.throttled_log import ThrottledLog

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Unsettled:
    """Spans handed to a sending task and not yet counted under an outcome.

    `deliver` takes what it counts off, so a task cancelled part way (between the parts of a
    split request, say) leaves exactly the uncounted rest for its owner to count.
    """

    spans: int
    total: int = 0
    """How many it started with: a batch with nothing settled yet can still be kept whole."""


class Delivery:
    """Sends requests through a transport until each is delivered, refused, or given up.

    `deliver` counts every span of its request under exactly one SpanOutcome before it returns,
    taking each count off `unsettled` as it is made, and counts nothing for a part of the
    request it is cancelled in (the caller then counts what is left unsettled as dropped at
    shutdown). Each count happens after an attempt's last await, so the two cannot overlap.

    A request of several traces that the backend refuses as invalid is sent again in halves,
    and so on down to single traces: one bad trace then costs only itself, not every trace
    that happened to share its request. At worst (a backend that refuses everything as invalid)
    a request of N traces takes 2N - 1 attempts, each trace's bytes going about log2(N) times.
    """

    def __init__(
        self,
        transport: Transport,
        policy: RetryPolicy,
        ledger: ExportLedger,
        rng: random.Random,
        name: str,
    ) -> None:
        self._transport = transport
        self._policy = policy
        self._ledger = ledger
        self._rng = rng
        self._name = name
        self._log = ThrottledLog(logger, interval=10.0)
        self._failing_since: float | None = None
        """When the current run of failed attempts began (None after a success)."""

    def failing_for(self) -> float | None:
        """Seconds every attempt has failed for (None if the last attempt got through)."""
        if self._failing_since is None:
            return None
        return time.monotonic() - self._failing_since

    async def deliver(self, request: ExportRequest, unsettled: Unsettled) -> None:
        """Send `request`, retrying retryable failures within the policy's time budget."""
        first_attempt = time.monotonic()
        retry = 0
        while True:
            started = time.monotonic()
            result = await self._attempt(request.payload)
            seconds = time.monotonic() - started
            if result.verdict is Verdict.DELIVERED:
                self._failing_since = None
                self._delivered(request, result, seconds, unsettled)
                return
            if result.verdict is Verdict.REJECTED:
                self._ledger.request(RequestOutcome.REJECTED, seconds)
                if result.invalid and request.splittable:
                    self._log.report(
                        "split",
                        "exporter %s: backend refused %d traces as invalid, sending them in "
                        "halves to find the ones it refuses: %s",
                        self._name,
                        len(request.traces),
                        result.message,
                    )
                    for half in request.halves():
                        await self.deliver(half, unsettled)
                    return
                self._settle(SpanOutcome.REJECTED, request.span_count, unsettled)
                self._log.report(
                    "rejected",
                    "exporter %s: backend refused %d spans: %s",
                    self._name,
                    request.span_count,
                    result.message,
                )
                return
            self._ledger.request(RequestOutcome.RETRYABLE_FAILURE, seconds)
            if self._failing_since is None:
                self._failing_since = started
            delay = self._policy.delay(retry, self._rng, result.retry_after)
            self._log.report(
                "retrying",
                "exporter %s: backend failed (%s); retrying %d spans, attempt %d, for up to "
                "%.0fs more",
                self._name,
                result.message or "no reason given",
                request.span_count,
                retry + 1,
                max(0.0, self._policy.max_elapsed - (time.monotonic() - first_attempt)),
            )
            if not self._policy.allows(time.monotonic() - first_attempt, delay):
                self._settle(SpanOutcome.DROPPED_RETRIES_EXHAUSTED, request.span_count, unsettled)
                self._log.report(
                    "retries_exhausted",
                    "exporter %s: dropped %d spans after %d attempts: %s",
                    self._name,
                    request.span_count,
                    retry + 1,
                    result.message,
                )
                return
            self._ledger.retry()
            await pause(delay)
            retry += 1

    def _settle(self, outcome: SpanOutcome, count: int, unsettled: Unsettled) -> None:
        self._ledger.spans(outcome, count)
        unsettled.spans -= count

    async def _attempt(self, payload: bytes) -> SendResult:
        try:
            return await self._transport.send(payload)
        except Exception as error:
            # Transports report every expected failure as a SendResult; anything else is a
            # surprise (a TLS setup error, say). Retrying keeps the spans accounted for and
            # gives a transient cause the chance to pass.
            logger.exception("exporter %s: unexpected error while sending", self._name)
            return SendResult(Verdict.RETRY, message=f"{type(error).__name__}: {error}")

    def _delivered(
        self, request: ExportRequest, result: SendResult, seconds: float, unsettled: Unsettled
    ) -> None:
        rejected = min(result.rejected_spans, request.span_count)
        if rejected or result.message:
            self._ledger.request(RequestOutcome.PARTIAL_SUCCESS, seconds)
            self._log.report(
                "partial_success",
                "exporter %s: backend accepted the request but rejected %d of %d spans: %s",
                self._name,
                rejected,
                request.span_count,
                result.message,
            )
        else:
            self._ledger.request(RequestOutcome.SENT, seconds)
        self._settle(SpanOutcome.REJECTED, rejected, unsettled)
        self._settle(SpanOutcome.SENT, request.span_count - rejected, unsettled)
