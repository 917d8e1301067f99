"""A shutdown phase that overruns says where it waits; one that does not says nothing."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from refinery_py.app import phase_times
from refinery_py.app.phase_times import PhaseTimes, await_chain


async def _wait_for_peer(gate: asyncio.Event) -> None:
    await gate.wait()


async def _leave(gate: asyncio.Event) -> None:
    await _wait_for_peer(gate)


class _OpenAfterReports(logging.Handler):
    """Sets `gate` once `count` stall reports have been logged: the phase then ends after a
    known number of reports, however slow the machine."""

    def __init__(self, gate: asyncio.Event, count: int) -> None:
        super().__init__(logging.WARNING)
        self.gate, self.count = gate, count
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.reports.append(record.getMessage())
        if len(self.reports) == self.count:
            self.gate.set()


async def test_an_overrunning_phase_is_reported_with_where_it_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(phase_times, "STALL_REPORT", 0.05)
    times = PhaseTimes()
    gate = asyncio.Event()
    reports = _OpenAfterReports(gate, count=2)
    phase_times.log.addHandler(reports)
    bystander = asyncio.create_task(_wait_for_peer(asyncio.Event()), name="bystander")
    try:
        with times.phase("leave"):
            await _leave(gate)
        await asyncio.sleep(0.2)  # the phase is over: no report comes after it
    finally:
        phase_times.log.removeHandler(reports)
        bystander.cancel()
    assert len(reports.reports) == 2, reports.reports
    first = reports.reports[0]
    assert re.match(r"shutdown: leave still running after \d+ s, waiting in ", first), first
    chain = first.split("waiting in ", 1)[1].split(";", 1)[0]
    # The test's own coroutine, then the two it awaits in turn, down to the event's future.
    names = [link.split(" (")[0] for link in chain.split(" -> ")]
    assert names[-4:-1] == ["_leave", "_wait_for_peer", "wait"], chain
    assert "test_phase_times.py:" in chain
    assert "bystander: _wait_for_peer (test_phase_times.py:" in first
    assert times.seconds["leave"] >= 0.1


async def test_a_phase_that_ends_in_time_is_not_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Long enough that no stall of a loaded machine between the phase's end and its exit
    # reaches it; the wait after the phase goes past it.
    monkeypatch.setattr(phase_times, "STALL_REPORT", 1.0)
    times = PhaseTimes()
    with caplog.at_level(logging.WARNING, logger=phase_times.__name__):
        with times.phase("front doors"):
            await asyncio.sleep(0)
        await asyncio.sleep(1.3)
    assert not [r for r in caplog.records if "still running" in r.getMessage()]
    assert str(times).startswith("front doors 0.0 s")


def test_phases_outside_an_event_loop_are_timed_without_a_watch() -> None:
    times = PhaseTimes()
    with times.phase("close"):
        pass
    assert list(times.seconds) == ["close"]


async def test_the_chain_of_a_task_that_has_not_started_is_its_coroutine() -> None:
    task = asyncio.create_task(_leave(asyncio.Event()))
    assert await_chain(task).startswith("_leave (test_phase_times.py:")
    task.cancel()


async def test_the_chain_goes_on_into_a_task_that_is_awaited() -> None:
    heartbeat = asyncio.create_task(_wait_for_peer(asyncio.Event()), name="heartbeat")

    async def stop() -> None:
        await heartbeat

    stopping = asyncio.create_task(stop())
    await asyncio.sleep(0)
    chain = await_chain(stopping)
    names = [link.split(" (")[0] for link in chain.split(" -> ")]
    assert names[:4] == ["stop", "task heartbeat", "_wait_for_peer", "wait"], chain
    heartbeat.cancel()
    await asyncio.gather(stopping, return_exceptions=True)
