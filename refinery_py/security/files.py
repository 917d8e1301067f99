"""What a file looks like from outside: enough to notice that it changed without reading it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

Stamp = tuple[int, int, int, int] | None
"""(device, inode, mtime in ns, size) of a file, None when it cannot be seen."""


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
