"""The private directory of a node of several workers: their Unix sockets and body files.

It is made in shared memory where the machine has some (so that workers can pass request bodies
as files: `cluster.body_file`), else in the default temporary directory, and the supervisor
removes it when it stops. A supervisor killed outright (SIGKILL, the OOM killer) cannot; in
shared memory the body files it left would hold memory until the machine restarts. So a
supervisor that starts removes the directories of supervisors that are gone: directories of
this user whose supervisor socket has stood for a while and takes no connection.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from refinery_py.app.role import supervisor_socket
from refinery_py.cluster.body_file import shared_memory_dir

log = logging.getLogger(__name__)

PREFIX = "refinery-"
SETTLED = 10.0
"""Seconds a supervisor socket must have existed before nobody answering it means its
supervisor is gone (a starting supervisor binds it a moment before it listens)."""


def make_private_dir() -> str:
    """A new private directory, after removing those left by supervisors that are gone."""
    parent = shared_memory_dir()
    removed = remove_abandoned(Path(parent or tempfile.gettempdir()))
    if removed:
        log.info(
            "removed %d private directories of nodes that are gone: %s",
            len(removed),
            ", ".join(map(str, removed)),
        )
    return tempfile.mkdtemp(prefix=PREFIX, dir=parent)


def remove_abandoned(parent: Path, now: float | None = None) -> list[Path]:
    """Remove the private directories in `parent` whose supervisor is gone; the ones removed."""
    now = time.time() if now is None else now
    removed = []
    for directory in sorted(parent.glob(PREFIX + "*")):
        if _abandoned(directory, now):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


def _abandoned(directory: Path, now: float) -> bool:
    sock = supervisor_socket(str(directory))
    try:
        if directory.is_symlink() or directory.stat().st_uid != os.getuid():
            return False
        if not sock.is_socket() or now - sock.lstat().st_mtime < SETTLED:
            return False
    except OSError:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(sock))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return False
