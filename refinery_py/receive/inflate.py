"""Decompressing gzip and deflate request bodies, bounded so a small bomb cannot grow large.

The HTTP receiver reads the compressed body as it came (aiohttp's own decompression is off: a
corrupt body there ends the connection with a logged traceback after the response) and inflates
it here in one call into zlib, never producing more than `limit` + 1 bytes.
"""

from __future__ import annotations

import zlib

from refinery_py.otlp.errors import MalformedPayload

CODINGS = frozenset({"gzip", "deflate"})
"""Content-Encodings `inflate` understands."""

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS


class BodyTooLarge(Exception):
    """The decompressed body would be larger than the limit."""


def inflate(body: bytes, coding: str, limit: int) -> bytes:
    """The decompressed `body`, sent with Content-Encoding `coding` (gzip or deflate).

    Raises BodyTooLarge as soon as the output passes `limit` bytes, and MalformedPayload when the
    data is corrupt or truncated. Concatenated gzip members are joined, as gzip readers do. For
    deflate, both the zlib format HTTP specifies and the raw deflate some clients send are taken.
    """
    if coding == "gzip":
        wbits = _GZIP_WBITS
    elif body[:1] and body[0] & 0x0F == 8:  # a zlib header names method 8 (deflate)
        wbits = _ZLIB_WBITS
    else:
        wbits = _RAW_DEFLATE_WBITS
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            # max_length is at least 1 here: 0 would mean "no limit".
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise MalformedPayload(f"request body is not valid {coding} data: {exc}") from None
        size += len(part)
        if size > limit:
            raise BodyTooLarge(f"request body inflates to more than {limit} bytes")
        if not inflater.eof:
            raise MalformedPayload(f"request body is truncated {coding} data")
        parts.append(part)
        rest = inflater.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if wbits != _GZIP_WBITS:
            raise MalformedPayload(f"request body has data after the end of its {coding} stream")
