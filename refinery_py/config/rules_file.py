"""A rules file on disk, watched for changes so a running node can pick up edits."""

from __future__ import annotations

import os
from pathlib import Path

from refinery_py.config.rules import load_rules
from refinery_py.config.rules_spec import RulesSpec


class RulesFile:
    """Knows when its file changed since the last load, by size, mtime and inode.

    Polling the file's metadata is cheap and works everywhere (editors that write a new file and
    rename it over the old one, ConfigMaps that swap a symlink); the digest of the content decides
    whether a change is real, so touching the file reloads nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def changed(self) -> bool:
        """Whether the file looks different from when `load` (or the constructor) last saw it."""
        return self._stat() != self._seen

    def load(self) -> RulesSpec:
        """Read and validate the file; raises ConfigError listing every problem."""
        self._seen = self._stat()
        return load_rules(self.path)
