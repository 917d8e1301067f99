"""CPU per MiB of the hop between two workers of one node: a body over the Unix socket, or left
in a file in shared memory (`cluster.body_file`).

    .venv/bin/python -m bench.hop_cost [--mib 600] [--rounds 3]

A real `PeerLink` in this process sends the bench's traffic, encoded as a front door encodes
what it forwards, to a real `PeerDoor` in a second process (a spawned worker, with the workers'
allocator settings) whose pipeline takes everything and keeps nothing. Each round sends `--mib`
MiB once with bodies over the socket and once through a body file, in alternating order, and
prints the CPU (user + system, both processes) per MiB of each. The door decodes every body in
both, so the difference is the hop itself.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from bench.traffic import TrafficShape, generate_requests
from refinery_py.app import tune_allocator
from refinery_py.app.node import read_peer_body
from refinery_py.cluster.body_file import BodyFile, shared_memory_dir
from refinery_py.cluster.link import ForwardLedger, Outgoing, PeerLink
from refinery_py.cluster.peer_door import PeerDoor
from refinery_py.model import ACCEPTED, Admission, Handoff, SpanBatch
from refinery_py.otlp.batch_codec import encode_span_batch
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.telemetry import Metrics


class Taking:
    """A pipeline that takes every forwarded batch and keeps nothing."""

    def accept_forwarded(self, batch: SpanBatch, hops: int) -> Admission:
        return ACCEPTED

    def adopt(self, handoff: Handoff, hops: int) -> Admission:
        return ACCEPTED


def _door(directory: str, ready: Connection) -> None:
    tune_allocator()

    async def serve() -> None:
        door = PeerDoor(
            Taking(),
            metrics=Metrics(),
            tcp=None,
            unix_path=Path(directory) / "worker-1.peer",
            doors=(),
            worker=1,
            secret=None,
            max_request_bytes=64 << 20,
            read_body=read_peer_body,
            body_files=True,
        )
        await door.start()
        ready.send(os.times())
        while True:  # until told: each request is the CPU used so far
            await asyncio.get_running_loop().run_in_executor(None, ready.recv)
            ready.send(os.times())

    asyncio.run(serve())


def _cpu(times: os.times_result) -> float:
    return times.user + times.system


async def _send(directory: str, records: list[bytes], mib: float, body_file: bool) -> int:
    """Send `records` round and round until `mib` MiB went; the bytes sent."""
    metrics = Metrics()
    link = PeerLink(
        f"unix:{Path(directory) / 'worker-1.peer'}",
        ledger=ForwardLedger(metrics),
        secret=None,
        max_bytes=1 << 40,
        body_file=BodyFile(Path(directory), 0) if body_file else None,
    )
    link.start()
    target = int(mib * (1 << 20))
    sent = 0
    index = 0
    while sent < target:
        # About 2 MiB a request, as `cluster.forward_linger` gathers them.
        while link.queued_bytes < 2 << 20:
            record = records[index % len(records)]
            index += 1
            link.offer(Outgoing(record=record, size=len(record), spans=1))
            sent += len(record)
        while link.queued_bytes:
            await asyncio.sleep(0.005)
    await link.close(10.0)
    delivered = metrics.forward_spans.labels("delivered")._value.get()
    assert delivered == index, f"{delivered} of {index} delivered"
    assert metrics.sibling_bodies.labels("socket" if body_file else "file")._value.get() == 0
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=float, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tune_allocator()
    interner = OriginInterner()
    records = [
        encode_span_batch(split_request(body, interner))
        for body in generate_requests(1000, TrafficShape(seed=7))
    ]
    directory = tempfile.mkdtemp(prefix="refinery-hop-", dir=shared_memory_dir())
    print(f"directory {directory} (shared memory: {shared_memory_dir() is not None})")
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    door = multiprocessing.get_context("spawn").Process(target=_door, args=(directory, theirs))
    door.start()
    try:
        door_times = ours.recv()
        results: dict[str, list[float]] = {"socket": [], "file": []}
        for round_number in range(args.rounds):
            order = ("socket", "file") if round_number % 2 == 0 else ("file", "socket")
            for way in order:
                started = _cpu(os.times())
                sent = asyncio.run(_send(directory, records, args.mib, way == "file"))
                ours.send(None)
                door_now = ours.recv()
                cpu = _cpu(os.times()) - started + _cpu(door_now) - _cpu(door_times)
                door_times = door_now
                per_mib = cpu / (sent / (1 << 20)) * 1e3
                results[way].append(per_mib)
                print(f"round {round_number + 1} {way:<7}{per_mib:7.3f} ms CPU per MiB")
                time.sleep(0.5)
        for way, values in results.items():
            print(f"{way:<7} median {statistics.median(values):.3f} ms CPU per MiB")
    finally:
        door.kill()
        door.join()
        for path in Path(directory).iterdir():
            path.unlink()
        os.rmdir(directory)


if __name__ == "__main__":
    main()
