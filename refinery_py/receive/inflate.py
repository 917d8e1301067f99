"""Decompressing gzip, deflate and zstd request bodies, bounded so a small bomb cannot grow large.

The HTTP receiver reads the compressed body as it came (aiohttp's own decompression is off: a
corrupt body there ends the connection with a logged traceback after the response) and inflates
it here, one call into zlib or zstd per gzip member or zstd frame, never producing more than
`limit` + 1 bytes.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from typing import Protocol

from refinery_py.otlp.errors import MalformedPayload

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

CODINGS = frozenset({"gzip", "deflate", "zstd"})
"""Content-Encodings `inflate` understands."""

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS


class BodyTooLarge(Exception):
    """The decompressed body would be larger than the limit."""


class _Decompressor(Protocol):
    """What zlib's and zstd's decompressors share: output bounded by `max_length`."""

    def decompress(self, data: bytes, /, max_length: int = ...) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...


def inflate(body: bytes, coding: str, limit: int) -> bytes:
    """The decompressed `body`, sent with Content-Encoding `coding` (gzip, deflate or zstd).

    Raises BodyTooLarge as soon as the output passes `limit` bytes, and MalformedPayload when the
    data is corrupt or truncated. Concatenated gzip members and zstd frames are joined, as their
    readers do. For deflate, both the zlib format HTTP specifies and the raw deflate some clients
    send are taken.
    """
    new: Callable[[], _Decompressor]
    error: type[Exception]
    if coding == "zstd":
        new, error = zstd.ZstdDecompressor, zstd.ZstdError
    else:
        if coding == "gzip":
            wbits = _GZIP_WBITS
        elif body[:1] and body[0] & 0x0F == 8:  # a zlib header names method 8 (deflate)
            wbits = _ZLIB_WBITS
        else:
            wbits = _RAW_DEFLATE_WBITS
        new, error = (lambda: zlib.decompressobj(wbits)), zlib.error
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        decompressor = new()
        try:
            # max_length is at least 1 here: 0 would mean "no limit" to zlib.
            part = decompressor.decompress(rest, limit + 1 - size)
        except error as exc:
            raise MalformedPayload(f"request body is not valid {coding} data: {exc}") from None
        size += len(part)
        if size > limit:
            raise BodyTooLarge(f"request body inflates to more than {limit} bytes")
        if not decompressor.eof:
            raise MalformedPayload(f"request body is truncated {coding} data")
        parts.append(part)
        rest = decompressor.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if coding == "deflate":
            raise MalformedPayload(f"request body has data after the end of its {coding} stream")
