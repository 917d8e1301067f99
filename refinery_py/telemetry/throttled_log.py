"""Logging that bad input or a failing backend cannot turn into a flood."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ThrottledLog:
    """Writes a warning of each kind at most once per `interval` seconds.

    Lines held back in between are counted, and the next line written for that kind says how
    many there were, so nothing is hidden for good. `kind` groups messages ("malformed",
    "partial_success"); the text of each may differ. Kinds come from small fixed sets, so the
    tables stay small.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._next_allowed: dict[str, float] = {}
        self._held_back: dict[str, int] = {}

    def report(self, kind: str, message: str, *args: object) -> None:
        """Log `message % args` at WARNING unless a `kind` line went out too recently."""
        now = self._clock()
        if now < self._next_allowed.get(kind, now):
            self._held_back[kind] = self._held_back.get(kind, 0) + 1
            return
        self._next_allowed[kind] = now + self._interval
        held_back = self._held_back.pop(kind, 0)
        if held_back:
            message += " (%d more like it not logged)"
            args = (*args, held_back)
        self._logger.warning(message, *args)
