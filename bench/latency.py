"""Decision latency: root span acknowledged at the sender → root span received at the sink.

The senders log every accepted request as (sender, request index, replay epoch, ack time); the
payload index says which root spans each request carried (as 12-byte trace-ID prefixes, the epoch
supplies the last 4 bytes) and which traces every policy must keep (errors, flagged). The sink
logs when each root span first arrived. Joining the two gives one latency per kept trace whose
root was acknowledged in a time window. A must-keep trace that never reached the sink counts as
infinitely late, so a server that falls behind or loses traces cannot look fast by omission.
Given the traces whose error span reached the sink, a missing must-keep trace whose error did is
counted as kept in part (its error rescued after the rest was dropped).
"""

from __future__ import annotations

import math
from collections.abc import Container
from dataclasses import dataclass

from bench.payloads import PayloadSet, epoch_trace_id

Ack = tuple[int, int, int, float]
"""(sender, request index, epoch, ack time)."""


@dataclass(frozen=True)
class Latency:
    samples: int
    p50: float
    p99: float
    must_keep: int
    """Must-keep traces whose root was acknowledged in the window."""
    must_keep_missing: int
    """Of those, how many never reached the sink (their root did not)."""
    must_keep_partial: int = 0
    """Of the missing, how many had an error span reach the sink without the root."""

    @property
    def complete(self) -> bool:
        return self.must_keep_missing == 0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted `values` (nan when empty)."""
    if not values:
        return math.nan
    rank = max(0, math.ceil(fraction * len(values)) - 1)
    return values[rank]


def measure(
    acks: list[Ack],
    start: float,
    end: float,
    payloads: list[PayloadSet],
    arrivals: dict[bytes, float],
    *,
    errored: Container[bytes] = frozenset(),
) -> Latency:
    """Latency of the kept traces whose root was acknowledged in [start, end)."""
    delays: list[float] = []
    must_keep = missing = partial = 0
    for sender, index, epoch, acked in acks:
        if not start <= acked < end:
            continue
        payload = payloads[sender]
        for prefix in payload.roots[index]:
            trace_id = epoch_trace_id(prefix, epoch)
            arrived = arrivals.get(trace_id)
            required = prefix in payload.must_keep
            must_keep += required
            if arrived is not None:
                delays.append(arrived - acked)
            elif required:
                missing += 1
                partial += trace_id in errored
                delays.append(math.inf)
    delays.sort()
    return Latency(
        samples=len(delays),
        p50=percentile(delays, 0.50),
        p99=percentile(delays, 0.99),
        must_keep=must_keep,
        must_keep_missing=missing,
        must_keep_partial=partial,
    )
