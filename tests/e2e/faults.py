"""What the fault tests need beside the harness: a node's processes, their memory, senders.

All from /proc (Linux), so looking costs the node nothing.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.harness import RefineryProcess


def children(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the parent pid follows the last ')'.
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry))
    return found


def worker_pids(node: RefineryProcess) -> list[int]:
    """The node's worker processes (multiprocessing's spawned children)."""
    pids = []
    for pid in children(node.process.pid):
        try:
            if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text():
                pids.append(pid)
        except OSError:
            continue
    return pids


def rss_bytes(pid: int) -> int:
    """VmRSS of `pid` and its children (0 for what is gone)."""
    total = 0
    for each in (pid, *children(pid)):
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class RssWatch:
    """Samples a process tree's RSS in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid = pid
        self.peak = 0
        self.first = rss_bytes(pid)
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, rss_bytes(self.pid))


class Load:
    """OTLP/HTTP requests from `make_body(n)` posted back to back by a thread until stopped;
    every answer counted, refused requests retried (a client keeps what is refused)."""

    def __init__(self, address: str, make_body: Callable[[int], tuple[bytes, int]]) -> None:
        self.address = address
        self.make_body = make_body
        self.accepted_spans = 0
        self.accepted_requests = 0
        self.refused = 0
        self.failed = 0
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        host, port = self.address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        number = 0
        body, spans = self.make_body(number)
        while not self._stop.is_set():
            try:
                connection.request(
                    "POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"}
                )
                response = connection.getresponse()
                response.read()
                status = response.status
            except OSError:
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
                status = 0
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 200:
                self.accepted_spans += spans
                self.accepted_requests += 1
                number += 1
                body, spans = self.make_body(number)
            elif status == 429:
                self.refused += 1
                time.sleep(0.05)
            else:
                self.failed += 1
                time.sleep(0.05)
        connection.close()

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def __exit__(self, *_: object) -> None:
        self.stop()
