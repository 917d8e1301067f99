"""How long to wait before trying again, and the one place the exporter sleeps."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

_MAX_DOUBLINGS = 62
"""Past this many doublings every cap is `max_interval` anyway; stopping avoids float overflow."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded in total time.

    The n-th retry (n from 0) waits a uniformly random time between `initial_interval` and
    `min(max_interval, initial_interval * 2**n)`: full jitter over the growing window, with the
    initial interval as a floor so a retry never comes sooner than configured. A server's retry
    hint replaces the computed wait. A request is given up once the time since its first attempt
    plus the next wait would exceed `max_elapsed`.
    """

    initial_interval: float
    max_interval: float
    max_elapsed: float

    def __post_init__(self) -> None:
        if self.initial_interval <= 0:
            raise ValueError("retry_initial_interval must be positive")
        if self.max_interval < self.initial_interval:
            raise ValueError("retry_max_interval must be at least retry_initial_interval")
        if self.max_elapsed < 0:
            raise ValueError("retry_max_elapsed must not be negative")

    def delay(self, retry: int, rng: random.Random, hint: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (0 for the first retry)."""
        if hint is not None:
            return max(hint, 0.0)
        cap = min(self.max_interval, self.initial_interval * 2.0 ** min(retry, _MAX_DOUBLINGS))
        return rng.uniform(self.initial_interval, cap)

    def allows(self, elapsed: float, delay: float) -> bool:
        """Whether a retry after `delay` more seconds still fits the `max_elapsed` budget."""
        return elapsed + delay <= self.max_elapsed


async def pause(seconds: float) -> None:
    """Wait between attempts. Every backoff sleep goes through here, and nowhere else."""
    await asyncio.sleep(seconds)
