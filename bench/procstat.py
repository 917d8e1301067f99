"""What the kernel says about a process tree: CPU seconds, resident and peak resident memory.

Read from /proc (Linux only), so measuring costs the measured processes nothing. A "tree" is a
process and all its descendants, so a server that forks worker processes is measured whole.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """One reading of a process tree."""

    cpu_seconds: float
    """utime + stime of the live processes, summed."""
    rss_bytes: int
    """VmRSS, summed."""
    hwm_bytes: int
    """VmHWM (peak resident set since each process started), summed."""
    processes: int


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return text[text.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """`root` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (0 if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the name: state(0) ppid(1) ... utime(11) stime(12), counted from field 3 of stat.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def usage(pids: list[int]) -> Usage:
    """CPU and memory of the given processes, summed."""
    return Usage(
        cpu_seconds=sum(cpu_seconds(pid) for pid in pids),
        rss_bytes=sum(_status_kib(pid, "VmRSS") for pid in pids) * 1024,
        hwm_bytes=sum(_status_kib(pid, "VmHWM") for pid in pids) * 1024,
        processes=len(pids),
    )


def tree_usage(root: int) -> Usage:
    return usage(descendants(root))


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used (all cores, from /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def foreign_cores(root: int, seconds: float) -> float:
    """Cores used over `seconds` by every process outside `root`'s tree."""
    machine, mine = machine_busy_seconds(), tree_usage(root).cpu_seconds
    time.sleep(seconds)
    spent = machine_busy_seconds() - machine - (tree_usage(root).cpu_seconds - mine)
    return max(0.0, spent) / seconds
