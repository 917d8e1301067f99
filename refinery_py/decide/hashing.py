"""Keep or drop by a hash of the trace ID, the same way Refinery's DeterministicSampler does.

Because the choice depends only on the trace ID, every node, replay and dry run reaches the same
decision for a trace, and it agrees with a Refinery node sampling the same trace at the same rate.
"""

from __future__ import annotations

from hashlib import sha1

SHARDING_SALT = b"5VQ8l2jE5aJLPVqk"
"""Refinery's salt, appended to the trace ID so this hash differs from its peer-sharding hash."""

MAX_UINT32 = 0xFFFFFFFF


def trace_hash(trace_id_hex: str) -> int:
    """The first four bytes, big-endian, of SHA-1(trace ID text + salt)."""
    return int.from_bytes(sha1(trace_id_hex.encode() + SHARDING_SALT).digest()[:4], "big")


def upper_bound(rate: int) -> int:
    """The largest hash kept at this rate: about one hash value in `rate` is at or below it."""
    return MAX_UINT32 // rate if rate > 1 else MAX_UINT32


def keep_for_rate(trace_id_hex: str, rate: int) -> bool:
    """Whether a trace is kept when sampling 1 in `rate`; a rate of 1 or less keeps everything."""
    if rate <= 1:
        return True
    return trace_hash(trace_id_hex) <= MAX_UINT32 // rate
