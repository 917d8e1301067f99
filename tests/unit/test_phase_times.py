"""A shutdown phase that overruns says where it waits; one that does not says nothing."""

from __future__ import annotations

import asyncio
import logging

import pytest

from refinery_py.app import phase_times
from refinery_py.app.phase_times import PhaseTimes, await_chain


async def _wait_for_peer(gate: asyncio.Event) -> None:
    await gate.wait()


async def _leave(gate: asyncio.Event) -> None:
    await _wait_for_peer(gate)


async def test_an_overrunning_phase_is_reported_with_where_it_waits(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(phase_times, "STALL_REPORT", 0.05)
    times = PhaseTimes()
    gate = asyncio.Event()
    bystander = asyncio.create_task(_wait_for_peer(asyncio.Event()), name="bystander")
    asyncio.get_running_loop().call_later(0.18, gate.set)
    with caplog.at_level(logging.WARNING, logger=phase_times.__name__), times.phase("leave"):
        await _leave(gate)
    bystander.cancel()
    reports = [r.getMessage() for r in caplog.records if "still running" in r.getMessage()]
    assert 2 <= len(reports) <= 4, reports
    first = reports[0]
    assert first.startswith("shutdown: leave still running after 0 s, waiting in ")
    chain = first.split("waiting in ", 1)[1].split(";", 1)[0]
    # The test's own coroutine, then the two it awaits in turn, down to the event's future.
    names = [link.split(" (")[0] for link in chain.split(" -> ")]
    assert names[-4:-1] == ["_leave", "_wait_for_peer", "wait"], chain
    assert "test_phase_times.py:" in chain
    assert "bystander: _wait_for_peer (test_phase_times.py:" in first
    assert times.seconds["leave"] >= 0.18


async def test_a_phase_that_ends_in_time_is_not_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(phase_times, "STALL_REPORT", 0.05)
    times = PhaseTimes()
    with caplog.at_level(logging.WARNING, logger=phase_times.__name__):
        with times.phase("front doors"):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.15)  # past the report time of the phase that ended
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
