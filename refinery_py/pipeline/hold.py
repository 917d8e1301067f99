"""Decisions wait for the spans a refusal sent back to their senders.

A refused request is not lost: its sender sends it again after the retry hint. But a trace whose
other spans were accepted would be decided at its deadline without them, and the retried spans
would then arrive late: an error in them could no longer keep its trace (at best the error
itself is rescued, without the spans already dropped). While refusals go on (each less than its
retry hint plus HOLD_MARGIN after the one before), traces due since they began wait until the
refused spans of the last one may be back, but no longer than RETRIES_WAITED waits past their
deadline (a wait being the largest retry hint in the run plus HOLD_MARGIN), and never longer
than `max_hold` (`traces.refusal_wait`, MAX_HOLD by default; 0 turns waiting off). Traces due
before the refusals began are decided as usual.

The refusals waited for are those made because decisions run behind and those made because a
peer's forwarding queue is full. Refusals made because an export queue would overflow are not:
admission counts buffered spans as bound for that queue, so waiting would prolong the very
refusals it waits out. Waiting costs buffer memory, and no CPU; the pipeline does not wait
while the buffer holds HOLD_MEMORY_SHARE of its budget (`traces.max_memory`) or more. Only this
member's refusals count: a front door that refuses because a peer's queue is full delays its
own decisions, not the peer's, which may still decide without the refused spans.

Measured with two workers forwarding, trace-scope rules, offered 160k spans/s (more than they
hold; 250-370 requests refused in 15 s), must-keep traces checked by their root:

- no waiting, 12 runs: 36 lost (0-9 per run, in 9 of the 12), p99 decision latency 3.3-3.9 s,
  the buffer's peak 0.29-0.38 GiB (in 6 of them);
- one wait (RETRIES_WAITED = 1), 6 runs: none lost, p99 5.0-5.6 s, peak 0.50-0.72 GiB;
- two waits, 15 runs: 1 lost, p99 6.9-8.3 s, peak 0.72-1.02 GiB (in 6);
- up to 10 s, 3 runs: 1 lost, p99 14.5-15.6 s.

What the node accepted varied from run to run (89k-150k spans/s) more than between settings.
"""

from __future__ import annotations

HOLD_MARGIN = 1.0
"""Seconds added to the retry hint: senders take time to retry, and jitter their retries."""
RETRIES_WAITED = 1
"""How many retry waits a decision waits out at most past its deadline. Two (a retry refused
once more) lost no fewer traces in the measurements above, at a longer wait and more memory."""
MAX_HOLD = 10.0
"""The default longest wait past a deadline for refused spans, whatever the hints."""
HOLD_MEMORY_SHARE = 0.5
"""Decisions wait only while the buffer holds less than this share of `traces.max_memory`."""


class RefusalHold:
    """Which traces are due now, given the requests refused lately."""

    __slots__ = ("_back_by", "_max_hold", "_since", "_wait")

    def __init__(self, max_hold: float = MAX_HOLD) -> None:
        self._max_hold = max_hold
        self._since = float("-inf")
        """When the current run of refusals began."""
        self._back_by = float("-inf")
        """When the spans of the latest refusal may be back."""
        self._wait = 0.0
        """The largest wait (retry hint plus margin) of the current run."""

    def refused(self, retry_after: float, now: float) -> None:
        """A request was refused at `now`, its sender told to retry after `retry_after` s."""
        wait = min(self._max_hold, max(0.0, retry_after) + HOLD_MARGIN)
        if now >= self._back_by:
            self._since, self._wait = now, wait
        else:
            self._wait = max(self._wait, wait)
        self._back_by = max(self._back_by, now + wait)

    def cutoff(self, now: float) -> float:
        """Traces whose deadline is at or before this are due now (`now` without refusals)."""
        if now >= self._back_by:
            return now
        longest = min(self._max_hold, RETRIES_WAITED * self._wait)
        return min(now, max(self._since, now - longest))
