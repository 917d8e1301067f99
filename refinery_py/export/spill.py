"""Kept traces that could not be delivered before shutdown, kept on disk for the next start.

A node that stops while its backend is down would otherwise lose everything still queued. The
exporter writes what is left into files here instead (bounded: `max_bytes` in all), and the
next start sends them first. A file holds one serialized `ExportTraceServiceRequest` (so
`refinery-py rules test` can read it too), and is written to a temporary name and renamed, so a
file is whole or absent.

Several processes (a node's workers, a node restarted while its old workers still exit) may
share the directory: a process claims a file by renaming it with its pid, so each file is sent
by one process; a file claimed by a process that is gone is claimed again; a file whose spans
could not be queued is handed back. A claimed file is deleted once its spans are delivered (or
refused by the backend for good).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".pb"
CLAIM = ".claimed-"
FILE_MAX_BYTES = 4 << 20
"""Payloads are grouped into files of about this size."""


@dataclass(frozen=True, slots=True)
class SpilledPayload:
    """Spans read back from a spill file (an `EncodedSpans` with the file it came from)."""

    payload: bytes
    span_count: int
    path: Path


class Spill:
    """The spill directory of one exporter."""

    def __init__(self, directory: Path, *, max_bytes: int, exporter: str) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._prefix = f"spill-{exporter}-"
        self._counter = itertools.count()

    def used_bytes(self) -> int:
        return sum(_size(path) for path in self._files("*"))

    def write(self, payloads: Iterable[tuple[bytes, int]]) -> tuple[int, int]:
        """Write (payload, spans) pairs, as far as the bound allows; (spans, bytes) written."""
        self.directory.mkdir(parents=True, exist_ok=True)
        room = self.max_bytes - self.used_bytes()
        written_spans = written_bytes = 0
        chunk: list[bytes] = []
        chunk_spans = chunk_bytes = 0
        for payload, spans in payloads:
            if written_bytes + chunk_bytes + len(payload) > room:
                break
            chunk.append(payload)
            chunk_spans += spans
            chunk_bytes += len(payload)
            if chunk_bytes >= FILE_MAX_BYTES:
                self._write_file(chunk)
                written_spans += chunk_spans
                written_bytes += chunk_bytes
                chunk, chunk_spans, chunk_bytes = [], 0, 0
        if chunk:
            self._write_file(chunk)
            written_spans += chunk_spans
            written_bytes += chunk_bytes
        return written_spans, written_bytes

    def _write_file(self, payloads: list[bytes]) -> None:
        name = f"{self._prefix}{time.time_ns()}-{os.getpid()}-{next(self._counter)}{SUFFIX}"
        final = self.directory / name
        temporary = final.with_name("." + name + ".tmp")
        with temporary.open("wb") as output:
            for payload in payloads:
                output.write(payload)
            output.flush()
            os.fsync(output.fileno())
        temporary.rename(final)

    def claim(self) -> list[Path]:
        """Files for this process to send: unclaimed ones, and those of processes that are gone."""
        if not self.directory.is_dir():
            return []
        mine = f"{CLAIM}{os.getpid()}"
        claimed: list[Path] = []
        for path in sorted(self._files("*")):
            base, _, owner = path.name.partition(CLAIM)
            if owner and _alive(owner):
                continue
            target = self.directory / (base + mine)
            try:
                path.rename(target)
            except OSError:
                continue  # another process claimed it first
            claimed.append(target)
        return claimed

    def release(self, path: Path) -> None:
        """Hand a claimed file back (its spans were not queued this time)."""
        with contextlib.suppress(OSError):
            path.rename(self.directory / path.name.partition(CLAIM)[0])

    def done(self, path: Path) -> None:
        """A claimed file's spans have their outcome: the file goes."""
        with contextlib.suppress(OSError):
            path.unlink()

    def _files(self, pattern: str) -> list[Path]:
        return [p for p in self.directory.glob(self._prefix + pattern) if SUFFIX in p.name]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
