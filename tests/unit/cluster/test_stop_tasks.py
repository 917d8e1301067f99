"""Background tasks end when stopped, even when a cancellation is dropped on the way."""

from __future__ import annotations

import asyncio
import sys

import pytest

from refinery_py.cluster import stop_tasks
from refinery_py.cluster.stop_tasks import cancel_and_wait


async def _heartbeat(written: asyncio.Future[None], beats: list[int]) -> None:
    """A loop shaped like redis-py's socket write inside a heartbeat: `wait_for` on an
    operation that completes in the same turn as the cancellation."""
    while True:
        await asyncio.wait_for(written, 10)
        beats.append(1)
        await asyncio.sleep(3600)


async def test_a_task_whose_cancellation_is_dropped_is_cancelled_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stop_tasks, "RECANCEL", 0.05)
    written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    beats: list[int] = []
    task = asyncio.create_task(_heartbeat(written, beats))
    await asyncio.sleep(0)  # the task now waits in wait_for
    written.set_result(None)  # ... and the write completes in the turn the cancellation comes
    async with asyncio.timeout(5):
        await cancel_and_wait([task])
    assert task.cancelled()
    if sys.version_info < (3, 12):
        # CPython gh-86296, for real: the write's result won over the first cancellation, and
        # the loop went on to its next beat; only the second cancellation ended it.
        assert beats == [1]


async def test_tasks_that_end_on_the_first_cancellation_are_waited_for_once() -> None:
    ended: list[str] = []

    async def cleans_up(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)  # a clean-up that awaits is not cut short
            ended.append(name)

    tasks = [asyncio.create_task(cleans_up(name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks)
    assert sorted(ended) == ["a", "b"]
    assert all(task.cancelled() for task in tasks)


async def test_an_error_a_task_ended_with_is_raised() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken"):
        await cancel_and_wait([task, asyncio.create_task(asyncio.sleep(3600))])
