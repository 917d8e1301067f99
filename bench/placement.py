"""Which CPUs the benchmark's processes run on: the load on some, each server worker on its own.

When the load (senders, sink) runs on the server's machine, what shares a server process's cores
can change its CPU per span, whatever the server does. Pinning makes such runs repeatable and
lets one test that effect. On this project's 2-core machine it was not the cause of two workers'
extra cost: behind a front at one worker's load, 90k spans/s, default rules, medians of three
alternating rounds (bench.equal_load), +19% per span over one worker with the load on CPU 1 and
the workers pinned to CPUs 0 and 1, and +20% with every process free to move.

A process is pinned thread by thread (`sched_setaffinity` acts on one thread); threads it starts
later inherit their creator's CPUs, and so do the processes it spawns.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench import procstat


def parse_cpus(text: str) -> tuple[int, ...]:
    """A CPU list as taskset and /proc write it ("0", "0,2", "0-3,6"), in the order given."""
    cpus: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"not a CPU list: {text!r} (e.g. 0,2-3)")
        span = range(int(first), int(last) + 1) if dash else range(int(first), int(first) + 1)
        if not span:
            raise ValueError(f"not a CPU list: {text!r} ({part} is an empty range)")
        cpus.extend(cpu for cpu in span if cpu not in cpus)
    usable = os.sched_getaffinity(0)
    missing = [cpu for cpu in cpus if cpu not in usable]
    if missing:
        raise ValueError(f"CPU {missing[0]} is not one this process may use ({sorted(usable)})")
    return tuple(cpus)


def pin(pid: int, cpus: tuple[int, ...]) -> None:
    """Every thread of `pid` runs on `cpus` from now on (a thread that just ended is skipped)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, FileNotFoundError):
            continue


def server_processes(root: int) -> list[int]:
    """`root`'s worker processes, oldest first; multiprocessing's helper processes (the
    resource tracker) are not workers."""
    found = []
    for pid in procstat.descendants(root)[1:]:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in command:
            found.append(pid)
    return sorted(found)


def place_server(root: int, cpus: tuple[int, ...]) -> dict[int, tuple[int, ...]]:
    """Pin a server: worker i runs on `cpus[i % len(cpus)]`; a supervisor and its helper
    processes may use all of `cpus`. A server of one process is its own worker 0. Returns the
    CPUs of each process."""
    workers = server_processes(root)
    placed = dict.fromkeys(procstat.descendants(root), cpus)
    for index, pid in enumerate(workers or [root]):
        placed[pid] = (cpus[index % len(cpus)],)
    for pid, its_cpus in placed.items():
        pin(pid, its_cpus)
    return placed
