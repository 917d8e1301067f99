"""Test doubles for a pipeline's edges: an exporter that keeps what it is offered, and a clock
that moves only when a test moves it."""

from __future__ import annotations

from refinery_py.model import KeptTrace


class Collecting:
    """An exporter that keeps every trace offered to it."""

    def __init__(self) -> None:
        self.traces: list[KeptTrace] = []

    def offer(self, trace: KeptTrace) -> None:
        self.traces.append(trace)

    async def start(self) -> None:
        return None

    async def close(self, timeout: float) -> None:
        return None


class Clock:
    """Seconds that move only when a test says so (`clock.now += 1.0`)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
