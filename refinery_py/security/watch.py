"""Noticing changed certificate, key, CA and token files: a poll every few seconds, and SIGHUP.

Each watched item compares the files' stamps (device, inode, mtime, size) with those it last
read and reloads itself when they differ; the poll costs a few `stat` calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

log = logging.getLogger("refinery_py.security")

POLL_INTERVAL = 5.0
"""Seconds between two looks at the files."""


class Reloadable(Protocol):
    def refresh(self) -> bool | None:
        """Reload if the files changed: True (taken), False (refused, old kept), None (same)."""
        ...


class CredentialWatcher:
    """Polls every added item every `interval` seconds once started; `check_now` at any time."""

    def __init__(self, interval: float = POLL_INTERVAL) -> None:
        self._interval = interval
        self._items: list[Reloadable] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, item: Reloadable) -> None:
        self._items.append(item)

    def check_now(self) -> None:
        for item in self._items:
            try:
                item.refresh()
            except Exception:  # a watcher that dies would leave expiring certificates in place
                log.exception("checking credential files failed")

    def start(self) -> None:
        if self._items and self._task is None:
            self._task = asyncio.create_task(self._poll(), name="credential-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.check_now()
