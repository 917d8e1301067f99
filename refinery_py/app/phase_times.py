"""Timing the phases of a shutdown, so that the last log line of a process says where a slow
shutdown spent its time."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class PhaseTimes:
    """How long each phase took, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - started

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
