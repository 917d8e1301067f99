"""When the server says to come back: gRPC `RetryInfo` and HTTP `Retry-After`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"
"""The trailer carrying a serialized `google.rpc.Status` with typed error details."""


def grpc_retry_delay(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> float | None:
    """Seconds from the `google.rpc.RetryInfo` in the status-details trailer, None if absent.

    The trailer's absence matters: OTLP makes RESOURCE_EXHAUSTED retryable only when the server
    sent RetryInfo (it can recover), so "no hint" and "retry now" must stay distinguishable.
    """
    for key, value in trailing_metadata or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                delay = info.retry_delay
                return max(float(delay.seconds) + float(delay.nanos) / 1e9, 0.0)
    return None


def http_retry_delay(header: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP-date), None if unusable.

    A date in the past means "now" (0.0). `now` is the wall clock, a parameter so a test can
    pin it; HTTP-dates are wall-clock times, so the monotonic clock would not do here.
    """
    if header is None:
        return None
    text = header.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)
