"""Ending background tasks for sure: cancel, and cancel again until they have ended.

One cancellation is not always enough. On CPython 3.11, `asyncio.wait_for` returns the result
of what it waited for, and drops the cancellation, when both arrive in the same turn of the
event loop (CPython gh-86296, fixed in 3.12). redis-py waits for every socket write that way,
so a Redis heartbeat loop cancelled while it writes carried on as if nothing had happened, and
a node waiting for it to end never finished its shutdown. A dropped cancellation is rare, and a
second one would cut short the clean-up the first began, so a task is cancelled again only
after `RECANCEL` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

RECANCEL = 1.0


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and return once every one has ended; an error one of them ended with
    (other than its cancellation) is raised, as `await task` would."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL)
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
