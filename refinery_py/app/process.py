"""The process itself: allocator tuning and how much memory the machine gives us."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
from pathlib import Path


def tune_allocator() -> None:
    """Make glibc malloc friendlier to a Python server (measured; see docs/architecture.md).

    One arena instead of one per thread doubles the gRPC server's throughput, and a high trim /
    mmap threshold stops large request buffers from being returned to the kernel and faulted back
    in on every request. Environment variables would be read too late, so use mallopt.
    """
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc (musl, macOS): nothing to tune
    m_trim_threshold, m_top_pad, m_mmap_threshold, m_arena_max = -1, -2, -3, -8
    for option, value in (
        (m_arena_max, 1),
        (m_trim_threshold, 256 << 20),
        (m_top_pad, 64 << 20),
        (m_mmap_threshold, 32 << 20),
    ):
        mallopt(option, value)


GC_THRESHOLDS = (10_000, 10, 10)
"""The cyclic collector's thresholds (Python's own: 700, 10, 10)."""


def tune_collector() -> None:
    """Run the cyclic garbage collector less often.

    Nearly all of a worker's garbage is freed by reference counting: at 80k spans/s its young
    collections found 18 unreachable objects in 20 s. With Python's thresholds they still ran
    16 times a second, and the middle generation's 1.5 times, each walking the objects of the
    requests in flight and of the traces just buffered: 0.4 s of CPU in those 20 s. With these
    thresholds, 0.12 s (measured with `gc.callbacks`).
    """
    gc.set_threshold(*GC_THRESHOLDS)


def machine_memory() -> int:
    """Physical memory available to this process: the cgroup limit when one is set."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            limit = int(Path(limit_file).read_text().strip())
            if 0 < limit < physical:
                return limit
    return physical
