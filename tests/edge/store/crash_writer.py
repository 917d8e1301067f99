"""A child process for the crash test: writes kept traces into a store as fast as it can.

    python -m tests.edge.store.crash_writer STORE_PATH FIRST_NUMBER

Runs the real StoreExporter (queue, writer thread, batched transactions) until it is killed.
"""

from __future__ import annotations

import asyncio
import sys

from refinery_py.store import StoreExporter
from refinery_py.telemetry import Metrics
from tests.edge.store.builders import TraceSpec, kept_trace, late_spans


async def write_forever(path: str, first: int) -> None:
    store = StoreExporter(path, metrics=Metrics(), queue_max_bytes=8 << 20)
    await store.start()
    print("writing", flush=True)
    number = first
    while True:
        if store.queued_bytes > 4 << 20:
            await asyncio.sleep(0.005)  # let the writer catch up rather than drop
            continue
        store.offer(
            kept_trace(TraceSpec(number, customer=f"c{number % 7}", error=number % 11 == 0))
        )
        if number % 5 == 0:
            store.offer(late_spans(number - 1, 2))
        number += 1
        if number % 100 == 0:
            await asyncio.sleep(0)


if __name__ == "__main__":
    asyncio.run(write_forever(sys.argv[1], int(sys.argv[2])))
