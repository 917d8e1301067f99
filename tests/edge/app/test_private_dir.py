"""A starting supervisor removes the private directories of supervisors that are gone."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from refinery_py.app.private_dir import SETTLED, remove_abandoned


@pytest.fixture
def parent() -> Iterator[Path]:
    # Short: a Unix socket's path must fit in 108 bytes.
    directory = Path(tempfile.mkdtemp(prefix="pd-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def private_dir(parent: Path, name: str, *, listening: bool, age: float) -> socket.socket:
    """A node's private directory with its supervisor socket, `age` seconds old."""
    directory = parent / name
    directory.mkdir()
    (directory / "worker-0-abc.body").write_bytes(b"x" * 1000)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = directory / "supervisor.sock"
    sock.bind(str(path))
    if listening:
        sock.listen()
    else:
        sock.close()  # its supervisor was killed: the file stays, nobody listens
    then = time.time() - age
    os.utime(path, (then, then))
    return sock


def test_only_directories_whose_supervisor_is_gone_are_removed(parent: Path) -> None:
    live = private_dir(parent, "refinery-live", listening=True, age=3600)
    private_dir(parent, "refinery-gone", listening=False, age=3600)
    private_dir(parent, "refinery-starting", listening=False, age=SETTLED / 2)
    private_dir(parent, "other-gone", listening=False, age=3600)
    (parent / "refinery-no-socket").mkdir()
    try:
        assert remove_abandoned(parent) == [parent / "refinery-gone"]
        assert sorted(p.name for p in parent.iterdir()) == [
            "other-gone",
            "refinery-live",
            "refinery-no-socket",
            "refinery-starting",
        ]
        assert (parent / "refinery-live" / "worker-0-abc.body").exists()
    finally:
        live.close()
