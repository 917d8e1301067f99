"""Request bodies between the workers of one node, passed through a file in shared memory.

A body posted over the workers' Unix socket is copied by the kernel in, out again in socket-
buffer-sized pieces, gathered by the event loop and the HTTP parser, then joined: at the
bench's forwarding rates that costs both sides more than everything else the hop does. When
the node's private directory is in shared memory (/dev/shm, a tmpfs: pages of memory, never
disk), a link to a sibling worker instead writes the body into a file of its own there, with
one `pwritev` of its parts (no join), and posts only the header `X-Refinery-Body: NAME:LENGTH`
with an empty body; the door reads the file with one `pread` (bench/README.md has the figures).

One file per link, rewritten for each request, because writing into pages a file already has
costs a fraction of allocating fresh ones. That is safe because a link has one request in
flight and the door has read the file before it answers. A request that ends without an
answer (a timeout, a broken connection) may still be read later, so the link then moves to a
new file and removes the old one (a reader that opened it keeps reading what was written).
A link idle for `IDLE_RELEASE` seconds empties its file, so an idle node holds no pages.

A file that cannot be written (/dev/shm is full: a container's is often 64 MiB) is not an
error: that body goes over the socket as before. The door takes the header only from the Unix
socket and only for a file name of this form in its own directory. A worker removes what its
predecessor left behind when it starts (`remove_left_behind`); the supervisor removes the
directory when the node stops.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from refinery_py.otlp.errors import MalformedPayload

BODY_HEADER = "X-Refinery-Body"
SHARED_MEMORY = Path("/dev/shm")
IDLE_RELEASE = 5.0
"""Seconds a link may sit idle before its file gives its pages back."""
_SUFFIX = ".body"
_NAME = re.compile(r"worker-\d+-[A-Za-z0-9_]+\.body")
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def shared_memory_dir() -> str | None:
    """Where a node's private directory goes so that its workers can pass bodies as files:
    /dev/shm when this machine has one this user can write to, else None (the default
    temporary directory, and bodies go over the socket)."""
    if SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK | os.X_OK):
        return str(SHARED_MEMORY)
    return None


def in_shared_memory(directory: str) -> bool:
    """Whether `directory` is in /dev/shm (so files there are memory, not disk)."""
    return bool(directory) and Path(directory).resolve().is_relative_to(SHARED_MEMORY.resolve())


def remove_left_behind(directory: Path, worker: int) -> None:
    """Remove the body files of an earlier worker `worker` (it died without removing them)."""
    for path in directory.glob(f"worker-{worker}-*{_SUFFIX}"):
        path.unlink(missing_ok=True)


class BodyFile:
    """A link's file for the bodies it sends to one sibling worker, in `directory`."""

    def __init__(self, directory: Path, worker: int) -> None:
        self._directory = directory
        self._prefix = f"worker-{worker}-"
        self._fd = -1
        self._name = ""
        self._size = 0
        """How much of the file holds pages (its largest body since it was last emptied)."""
        self.failure = ""
        """Why the last `write` that failed did."""

    @property
    def holding(self) -> bool:
        """Whether the file holds pages that `release` would give back."""
        return self._size > 0

    def write(self, parts: list[bytes]) -> str | None:
        """Write a body made of `parts` (joined in order) into the file; the header value that
        names it, or None when the file could not take it (`failure` says why; the caller
        sends the body itself, and the next body tries a new file)."""
        length = sum(map(len, parts))
        try:
            if self._fd < 0:
                self._open()
            written = 0
            for start in range(0, len(parts), _IOV_MAX):
                written += os.pwritev(self._fd, parts[start : start + _IOV_MAX], written)
        except OSError as error:  # ENOSPC: /dev/shm is full
            self.failure = error.strerror or type(error).__name__
            self.discard()
            return None
        if written != length:  # a short write to a tmpfs file: out of room
            self.failure = f"wrote {written} of {length} bytes"
            self.discard()
            return None
        self._size = max(self._size, length)
        return f"{self._name}:{length}"

    def discard(self) -> None:
        """Stop using the file (a request may still read it): the next body goes to a new one."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self._directory / self._name)
            os.close(self._fd)
        self._fd, self._name, self._size = -1, "", 0

    def release(self) -> None:
        """Give the file's pages back while the link is idle (only after an answered request:
        nothing reads it then)."""
        if self._fd >= 0 and self._size:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                self.discard()
                return
            self._size = 0

    def close(self) -> None:
        self.discard()

    def _open(self) -> None:
        fd, path = tempfile.mkstemp(suffix=_SUFFIX, prefix=self._prefix, dir=self._directory)
        self._fd, self._name, self._size = fd, os.path.basename(path), 0


class BodyFileUnreadable(Exception):
    """The file a request names cannot be read whole (the door answers 409: the sender moves to
    a new file and sends again)."""


def named_body(header: str) -> tuple[str, int]:
    """The file name and body length a `BODY_HEADER` value `NAME:LENGTH` gives.

    Raises MalformedPayload when it does not name a body file (a sender's defect).
    """
    name, _, length = header.rpartition(":")
    if not _NAME.fullmatch(name) or not length.isdigit():
        raise MalformedPayload(f"{BODY_HEADER} must be NAME:LENGTH of a body file, not {header!r}")
    return name, int(length)


def read_body_file(directory: Path, name: str, length: int) -> bytes:
    """The `length` bytes a sibling wrote to the file `name` in `directory` (see `named_body`).

    Raises BodyFileUnreadable for a file that is gone or shorter than that.
    """
    try:
        fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        raise BodyFileUnreadable(f"body file {name} cannot be read: {error.strerror}") from None
    try:
        body = os.pread(fd, length, 0)
    finally:
        os.close(fd)
    if len(body) != length:
        raise BodyFileUnreadable(f"body file {name} holds {len(body)} bytes, not {length}")
    return body
