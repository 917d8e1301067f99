"""When a node refuses a request instead of taking it: backpressure that reaches the sender.

Two conditions, each answered with RESOURCE_EXHAUSTED / HTTP 429 and a retry hint, so the sender
keeps its data and tries again:

- decisions run more than `max_lag` behind (the event loop cannot keep up), unless stress relief
  is on, which takes the load by deciding on arrival instead;
- an export queue would overflow: what is buffered now reaches the export when it is decided, so
  the queue's content plus the buffer's likely kept share must fit in `EXPORT_ROOM` of its bound.
  Without this, a slow backend made the node accept requests and then drop their spans at a full
  queue.
"""

from __future__ import annotations

from collections.abc import Sequence

from refinery_py.config.settings import MiB
from refinery_py.model import Admission, ExportBacklog

EXPORT_ROOM = 0.8
"""Admission keeps an export queue's expected use (queued + the buffer's kept share) below this
share of its bound, leaving room for estimates that fall short."""


def lag_refusal(lag: float, max_lag: float) -> Admission | None:
    """A refusal while decisions run more than `max_lag` seconds behind."""
    if lag <= max_lag:
        return None
    return Admission(
        False,
        retry_after=max(1.0, lag),
        message=f"overloaded: decisions are running {lag:.1f}s behind",
    )


def backlog_refusal(
    backlogs: Sequence[ExportBacklog], buffered_bytes: int, kept_share: float
) -> Admission | None:
    """A refusal while an export queue plus the kept share of the buffer would not fit."""
    coming = buffered_bytes * kept_share
    for backlog in backlogs:
        if backlog.queued_bytes + coming > EXPORT_ROOM * backlog.max_bytes:
            return Admission(
                False,
                retry_after=2.0,
                message=(
                    f"overloaded: the export queue holds {backlog.queued_bytes / MiB:.1f} of its "
                    f"{backlog.max_bytes / MiB:.1f} MiB and the buffer ~{coming / MiB:.1f} MiB "
                    "more to be kept; the backend is not keeping up"
                ),
            )
    return None
