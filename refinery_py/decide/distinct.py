"""How many distinct keys a window had past the ones it could remember: a small HyperLogLog.

A sampler remembers up to a cap of a window's keys exactly (see `keyed`); past it, it only needs
to know about how many more there were, and how many of those kept a trace, so that the share
of active keys kept (a metric) stays honest when the cap is reached instead of counting only
the remembered keys. HyperLogLog (Flajolet et al. 2007) does that in 1 KiB with a standard
error of about 3%, with the usual linear-counting estimate for small counts. The hash is
xxh64 of the key, so the estimate is the same on every run and every node.
"""

from __future__ import annotations

import math

import xxhash

_BITS = 10
_REGISTERS = 1 << _BITS
_REST = 64 - _BITS
_ALPHA = 0.7213 / (1 + 1.079 / _REGISTERS)


class DistinctCount:
    """An estimate of the number of distinct strings added."""

    __slots__ = ("_registers",)

    def __init__(self) -> None:
        self._registers = bytearray(_REGISTERS)

    def add(self, key: str) -> None:
        hashed = xxhash.xxh64_intdigest(key.encode())
        index = hashed >> _REST
        rank = _REST - (hashed & ((1 << _REST) - 1)).bit_length() + 1
        self._registers[index] = max(self._registers[index], rank)

    def estimate(self) -> int:
        registers = self._registers
        zeros = registers.count(0)
        if zeros == _REGISTERS:
            return 0
        raw = _ALPHA * _REGISTERS * _REGISTERS / sum(2.0**-rank for rank in registers)
        if raw <= 2.5 * _REGISTERS and zeros:
            return round(_REGISTERS * math.log(_REGISTERS / zeros))
        return round(raw)
