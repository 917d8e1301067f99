"""glibc malloc settings for the benchmark's own processes (senders, the floor measurement).

The same settings refinery_py applies to itself at start-up (docs/architecture.md): one arena, and
trim / mmap thresholds high enough that large request buffers are reused instead of being returned
to the kernel and faulted back in on every request. A copy rather than an import, so the benchmark
does not depend on where the server keeps its start-up code."""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8


def tune() -> None:
    """Apply the settings through mallopt; nothing happens where libc is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return
    for option, value in (
        (_M_ARENA_MAX, 1),
        (_M_TRIM_THRESHOLD, 256 << 20),
        (_M_TOP_PAD, 64 << 20),
        (_M_MMAP_THRESHOLD, 32 << 20),
    ):
        mallopt(option, value)
