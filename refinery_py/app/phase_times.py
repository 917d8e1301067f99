"""Timing the phases of a shutdown, so that the last log line of a process says where a slow
shutdown spent its time, and a shutdown that hangs says where it hangs while it hangs.

A phase that runs longer than `STALL_REPORT` seconds is logged every `STALL_REPORT` seconds
with the chain of awaits it is blocked in, and the names and chains of the process's other
pending tasks. That report runs on the event loop, so it cannot speak for a loop that is
blocked itself (a call that never returns); for that case `faulthandler` dumps every thread's
stack to stderr once the loop has not run the report for `LOOP_STUCK` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import logging
import os
import sys
import time
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger(__name__)

STALL_REPORT = 10.0
LOOP_STUCK = 25.0


class PhaseTimes:
    """How long each phase took, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        watch = _StallWatch(name, started)
        try:
            yield
        finally:
            watch.cancel()
            self.seconds[name] = time.monotonic() - started

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())


class _StallWatch:
    """Reports a phase of the task that entered it, while the phase overruns."""

    def __init__(self, name: str, started: float) -> None:
        self._name = name
        self._started = started
        self._handle: asyncio.TimerHandle | None = None
        try:
            self._task = asyncio.current_task()
        except RuntimeError:  # no running loop: nothing to watch from
            self._task = None
        if self._task is not None:
            self._handle = asyncio.get_running_loop().call_later(STALL_REPORT, self._report)
            _arm_thread_dump()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            faulthandler.cancel_dump_traceback_later()

    def _report(self) -> None:
        assert self._task is not None
        others = [
            task for task in asyncio.all_tasks() if task is not self._task and not task.done()
        ]
        log.warning(
            "shutdown: %s still running after %.0f s, waiting in %s; %d other tasks:%s",
            self._name,
            time.monotonic() - self._started,
            await_chain(self._task),
            len(others),
            "".join(f"\n  {task.get_name()}: {await_chain(task)}" for task in others),
        )
        self._handle = asyncio.get_running_loop().call_later(STALL_REPORT, self._report)
        _arm_thread_dump()


def _arm_thread_dump() -> None:
    """Dump every thread's stack unless the loop gets back to re-arm (or cancel) this in time."""
    with contextlib.suppress(ValueError, RuntimeError):  # no usable stderr
        faulthandler.dump_traceback_later(LOOP_STUCK, file=sys.stderr)


def await_chain(task: asyncio.Task[object]) -> str:
    """Where a task is suspended: its coroutine, what that awaits, and so on down, innermost
    last (`a (file.py:10) -> b (other.py:20) -> Future`); through an awaited task into where
    that one waits (`-> task heartbeat -> c (file.py:30) -> ...`)."""
    links: list[str] = []
    awaited: object = task.get_coro()
    while awaited is not None and len(links) < 40:
        frame = _frame_of(awaited)
        if frame is None:
            # What has no frame wraps what is awaited: `async for` awaits an
            # async_generator_asend that holds the generator, `await task` an iterator that
            # holds the task.
            inner = gc.get_referents(awaited)
            awaited_task = next((r for r in inner if isinstance(r, asyncio.Task)), None)
            if awaited_task is not None and awaited_task is not task:
                links.append(f"task {awaited_task.get_name()}")
                awaited = awaited_task.get_coro()
                continue
            generator = next((r for r in inner if _frame_of(r)), None)
            if generator is None:
                links.append(type(awaited).__name__)
                break
            awaited = generator
            continue
        code = frame.f_code
        links.append(f"{code.co_name} ({os.path.basename(code.co_filename)}:{frame.f_lineno})")
        awaited = _next_awaited(awaited)
    return " -> ".join(links)


def _frame_of(awaitable: object) -> FrameType | None:
    for attribute in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, attribute, None)
        if isinstance(frame, FrameType):
            return frame
    return None


def _next_awaited(awaitable: object) -> object:
    for attribute in ("cr_await", "gi_yieldfrom", "ag_await"):
        inner = getattr(awaitable, attribute, None)
        if inner is not None:
            return inner
    return None
