"""Recorded traffic files: OTLP JSON lines (the Collector file exporter's format) and protobuf."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.json import json_to_protobuf

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
PROTOBUF_SUFFIXES = (".pb", ".binpb", ".protobuf")
PARALLEL_BYTES = 8 << 20
"""JSON files larger than this are converted on every CPU: the conversion is the replay's cost."""


class SourceError(ValueError):
    """A traffic file cannot be read; the message names the file (and line)."""


def read_requests(path: Path) -> Iterator[bytes]:
    """Serialized ExportTraceServiceRequests from one file, in file order.

    `*.json`/`*.jsonl`: one OTLP JSON request per line (a `.json` file holding one request
    spread over several lines works too). `*.pb`/`*.binpb`: one serialized request.
    """
    suffix = path.suffix.lower()
    if suffix in PROTOBUF_SUFFIXES:
        yield _read_bytes(path)
        return
    if suffix not in JSON_SUFFIXES:
        raise SourceError(
            f"{path}: unknown traffic format; use OTLP JSON lines (.json, .jsonl) or "
            "a serialized ExportTraceServiceRequest (.pb, .binpb)"
        )
    data = _read_bytes(path)
    lines = data.splitlines()
    workers = os.cpu_count() or 1
    try:
        if len(data) > PARALLEL_BYTES and workers > 1:
            wheres = (f"{path}:{number}" for number in range(1, len(lines) + 1))
            with ProcessPoolExecutor(workers) as pool:
                for body in pool.map(_from_json, lines, wheres, chunksize=8):
                    if body:
                        yield body
        else:
            for number, line in enumerate(lines, 1):
                body = _from_json(line, f"{path}:{number}")
                if body:
                    yield body
    except SourceError:
        if suffix == ".json" and len(lines) > 1:
            yield _from_json(data, str(path))  # one pretty-printed request
            return
        raise


def _from_json(text: bytes, where: str) -> bytes:
    """Protobuf bytes of one JSON request; b"" for a blank line."""
    if not text.strip():
        return b""
    try:
        return json_to_protobuf(text)
    except MalformedPayload as exc:
        raise SourceError(f"{where}: {exc}") from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from None
