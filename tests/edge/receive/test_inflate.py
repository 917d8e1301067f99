"""Bounded decompression of request bodies (no server needed)."""

from __future__ import annotations

import gzip
import struct
import sys
import zlib

import pytest

from refinery_py.otlp.errors import MalformedPayload
from refinery_py.receive.inflate import BodyTooLarge, inflate

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

DATA = b"span bytes " * 100


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def zstd_streamed(data: bytes) -> bytes:
    """A frame written as a stream: no content size in its header, a checksum at its end (what
    streaming encoders, such as the Collector's, write)."""
    compressor = zstd.ZstdCompressor(options={zstd.CompressionParameter.checksum_flag: 1})
    return compressor.compress(data) + compressor.flush()


def skippable_frame(payload: bytes) -> bytes:
    """RFC 8878's skippable frame (magic 0x184D2A50-5F, then a length): readers pass over it."""
    return struct.pack("<II", 0x184D2A5A, len(payload)) + payload


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(DATA)),
        ("deflate", zlib.compress(DATA)),
        ("deflate", raw_deflate(DATA)),
        ("zstd", zstd.compress(DATA)),
        ("zstd", zstd_streamed(DATA)),
        ("zstd", skippable_frame(b"metadata") + zstd.compress(DATA)),
    ],
    ids=["gzip", "zlib-deflate", "raw-deflate", "zstd", "zstd-streamed", "zstd-skippable"],
)
def test_inflates_what_clients_send(coding: str, body: bytes) -> None:
    assert inflate(body, coding, len(DATA)) == DATA


def test_concatenated_gzip_members_are_joined() -> None:
    assert inflate(gzip.compress(b"abc") + gzip.compress(b"def"), "gzip", 6) == b"abcdef"


def test_concatenated_zstd_frames_are_joined() -> None:
    assert inflate(zstd.compress(b"abc") + zstd_streamed(b"def"), "zstd", 6) == b"abcdef"


COMPRESS = {"gzip": gzip.compress, "deflate": zlib.compress, "zstd": zstd.compress}


@pytest.mark.parametrize("coding", ["gzip", "deflate", "zstd"])
def test_output_past_the_limit_is_too_large(coding: str) -> None:
    with pytest.raises(BodyTooLarge):
        inflate(COMPRESS[coding](DATA), coding, len(DATA) - 1)


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_a_bomb_stops_at_the_limit(coding: str) -> None:
    bomb = COMPRESS[coding](bytes(32 << 20))
    with pytest.raises(BodyTooLarge):
        inflate(bomb, coding, 1 << 20)


def test_a_streamed_zstd_bomb_stops_at_the_limit() -> None:
    """No content size in the header to go by: the output itself is bounded."""
    with pytest.raises(BodyTooLarge):
        inflate(zstd_streamed(bytes(32 << 20)), "zstd", 1 << 20)


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_every_member_counts_toward_the_limit(coding: str) -> None:
    compress = COMPRESS[coding]
    with pytest.raises(BodyTooLarge):
        inflate(compress(b"abc") + compress(b"def"), coding, 5)


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", b""),
        ("gzip", b"plain text"),
        ("gzip", gzip.compress(DATA)[:-4]),
        ("gzip", gzip.compress(DATA) + b"\x00junk"),
        ("deflate", zlib.compress(DATA)[:10]),
        ("zstd", b""),
        ("zstd", b"plain text"),
        ("zstd", zstd.compress(DATA)[:-4]),
        ("zstd", zstd_streamed(DATA)[:-2]),
        ("zstd", zstd.compress(DATA) + b"\x00junk"),
        ("zstd", skippable_frame(b"metadata")[:-2]),
        ("zstd", zstd_streamed(DATA)[:-1] + bytes([zstd_streamed(DATA)[-1] ^ 1])),
    ],
    ids=[
        "empty",
        "not-gzip",
        "truncated",
        "trailing-junk",
        "truncated-deflate",
        "empty-zstd",
        "not-zstd",
        "truncated-zstd",
        "truncated-zstd-checksum",
        "zstd-trailing-junk",
        "truncated-skippable-frame",
        "zstd-checksum-mismatch",
    ],
)
def test_corrupt_data_is_malformed(coding: str, body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        inflate(body, coding, 1 << 20)
