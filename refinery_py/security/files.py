"""Files read once and again when they change: noticing a change without reading the files,
and reloading them so that a failure keeps what was read before."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("refinery_py.security")

T = TypeVar("T")

Stamp = tuple[int, int, int, int] | None
"""(device, inode, mtime in ns, size) of a file, None when it cannot be seen."""

ReloadOutcome = Callable[[bool], None]
"""Told after each reload attempt whether the new files were taken (True) or refused."""


def file_stamp(path: Path) -> Stamp:
    """The file's stamp, following symlinks: a Kubernetes secret volume swaps a symlinked
    directory, which changes the inode even when the size and mtime happen to be equal."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size


def file_stamps(paths: Iterable[Path]) -> tuple[Stamp, ...]:
    return tuple(file_stamp(path) for path in paths)


class WatchedFiles:
    """The files one piece of material is read from, and their stamps when last read.

    `name` says whose files they are in the log; `on_reload` hears every attempt's outcome.
    """

    def __init__(
        self, paths: Iterable[Path], *, name: str, on_reload: ReloadOutcome | None = None
    ) -> None:
        self.paths = tuple(paths)
        self.name = name
        self._on_reload = on_reload
        # Taken before the first read, like every later one: a file that changes while it is
        # read is noticed (and read again) on the next look.
        self._stamps = file_stamps(self.paths)

    def reload(self, load: Callable[[], T], use: Callable[[T], None], *, kept: str) -> bool | None:
        """If the files changed since they were last read, `load` them and `use` the result:
        True. When loading raises ValueError (PemProblem is one), what is in use stays, the
        log says so (`kept` says what stays) and the answer is False. None: no change."""
        stamps = file_stamps(self.paths)
        if stamps == self._stamps:
            return None
        self._stamps = stamps
        try:
            loaded = load()
        except ValueError as exc:
            log.error("%s: the changed files were not taken; %s: %s", self.name, kept, exc)
            self._outcome(False)
            return False
        use(loaded)
        log.info("%s: the changed files are in use", self.name)
        self._outcome(True)
        return True

    def _outcome(self, taken: bool) -> None:
        if self._on_reload is not None:
            self._on_reload(taken)
