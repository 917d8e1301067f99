"""A link's body file (`cluster.body_file`), on a real file system."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from refinery_py.cluster.body_file import (
    BodyFile,
    BodyFileUnreadable,
    named_body,
    read_body_file,
    remove_left_behind,
)
from refinery_py.otlp.errors import MalformedPayload


def read(directory: Path, header: str) -> bytes:
    return read_body_file(directory, *named_body(header))


def test_a_body_written_in_parts_reads_back_joined_however_many_parts(tmp_path: Path) -> None:
    body_file = BodyFile(tmp_path, 3)
    parts = [bytes([n % 251]) * (n % 7 + 1) for n in range(5000)]  # past IOV_MAX (1024)
    header = body_file.write(parts)
    assert header is not None and header.startswith("worker-3-")
    assert read(tmp_path, header) == b"".join(parts)
    shorter = body_file.write([b"abc"])
    assert shorter is not None
    assert shorter.split(":")[0] == header.split(":")[0], "the same file, written again"
    assert read(tmp_path, shorter) == b"abc"


def test_discard_moves_to_a_new_file_and_release_gives_the_pages_back(tmp_path: Path) -> None:
    body_file = BodyFile(tmp_path, 0)
    first = body_file.write([b"x" * 100_000])
    assert first is not None
    name = first.split(":")[0]
    assert body_file.holding
    body_file.release()
    assert not body_file.holding
    assert (tmp_path / name).stat().st_size == 0
    again = body_file.write([b"y" * 10])
    assert again is not None and read(tmp_path, again) == b"y" * 10
    body_file.discard()
    assert not (tmp_path / name).exists()
    moved = body_file.write([b"z"])
    assert moved is not None and moved.split(":")[0] != name
    body_file.close()
    assert not list(tmp_path.iterdir())


def test_a_file_that_cannot_be_written_says_why_and_the_next_write_tries_again(
    tmp_path: Path,
) -> None:
    gone = tmp_path / "gone"
    body_file = BodyFile(gone, 0)
    assert body_file.write([b"abc"]) is None
    assert "No such file" in body_file.failure
    gone.mkdir()
    header = body_file.write([b"abc"])
    assert header is not None and read(gone, header) == b"abc"


@pytest.mark.parametrize(
    "header",
    [
        "worker-0-a.body",
        "worker-0-a.body:",
        "worker-0-a.body:-3",
        "../worker-0-a.body:3",
        "/tmp/worker-0-a.body:3",
        "worker-x-a.body:3",
        "worker-0-a.txt:3",
        "worker-0-a/b.body:3",
    ],
)
def test_a_header_that_names_no_body_file_is_malformed(header: str) -> None:
    with pytest.raises(MalformedPayload, match="NAME:LENGTH"):
        named_body(header)


def test_a_missing_or_short_file_is_unreadable_not_malformed(tmp_path: Path) -> None:
    (tmp_path / "worker-1-a.body").write_bytes(b"12345")
    with pytest.raises(BodyFileUnreadable, match="holds 5 bytes, not 6"):
        read(tmp_path, "worker-1-a.body:6")
    with pytest.raises(BodyFileUnreadable, match="cannot be read"):
        read(tmp_path, "worker-1-b.body:1")
    os.symlink(tmp_path / "worker-1-a.body", tmp_path / "worker-1-link.body")
    with pytest.raises(BodyFileUnreadable, match="cannot be read"):
        read(tmp_path, "worker-1-link.body:5")


def test_a_new_worker_removes_only_its_predecessors_files(tmp_path: Path) -> None:
    for name in ("worker-1-a.body", "worker-1-b.body", "worker-10-a.body", "worker-2-a.body"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "worker-1.peer").write_bytes(b"")
    remove_left_behind(tmp_path, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "worker-1.peer",
        "worker-10-a.body",
        "worker-2-a.body",
    ]
