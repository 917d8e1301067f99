"""Bounded decompression of request bodies (no server needed)."""

from __future__ import annotations

import gzip
import zlib

import pytest

from refinery_py.otlp.errors import MalformedPayload
from refinery_py.receive.inflate import BodyTooLarge, inflate

DATA = b"span bytes " * 100


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(DATA)),
        ("deflate", zlib.compress(DATA)),
        ("deflate", raw_deflate(DATA)),
    ],
    ids=["gzip", "zlib-deflate", "raw-deflate"],
)
def test_inflates_what_clients_send(coding: str, body: bytes) -> None:
    assert inflate(body, coding, len(DATA)) == DATA


def test_concatenated_gzip_members_are_joined() -> None:
    assert inflate(gzip.compress(b"abc") + gzip.compress(b"def"), "gzip", 6) == b"abcdef"


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_output_past_the_limit_is_too_large(coding: str) -> None:
    body = gzip.compress(DATA) if coding == "gzip" else zlib.compress(DATA)
    with pytest.raises(BodyTooLarge):
        inflate(body, coding, len(DATA) - 1)


def test_a_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(bytes(32 << 20))
    with pytest.raises(BodyTooLarge):
        inflate(bomb, "gzip", 1 << 20)


def test_every_member_counts_toward_the_limit() -> None:
    with pytest.raises(BodyTooLarge):
        inflate(gzip.compress(b"abc") + gzip.compress(b"def"), "gzip", 5)


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", b""),
        ("gzip", b"plain text"),
        ("gzip", gzip.compress(DATA)[:-4]),
        ("gzip", gzip.compress(DATA) + b"\x00junk"),
        ("deflate", zlib.compress(DATA)[:10]),
    ],
    ids=["empty", "not-gzip", "truncated", "trailing-junk", "truncated-deflate"],
)
def test_corrupt_data_is_malformed(coding: str, body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        inflate(body, coding, 1 << 20)
