"""Split a batch of spans by where each span's trace must go."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from itertools import compress
from typing import TypeVar

from refinery_py.model import SpanBatch

K = TypeVar("K", bound=Hashable)


def split_by(batch: SpanBatch, destination_of: Callable[[bytes], K]) -> dict[K, SpanBatch]:
    """The batch's spans grouped by `destination_of(trace_id)`; empty groups are absent.

    The destination is computed once per distinct trace; the spans are then filtered per
    destination with `itertools.compress`, so the per-span work is a dict lookup and C-level
    copying. Rejected-span counts stay with the caller, since they were already reported to the
    client.
    """
    trace_ids = batch.trace_ids
    cache: dict[bytes, K] = {}

    def destination(trace_id: bytes) -> K:
        found = cache.get(trace_id)
        if found is None:
            found = cache[trace_id] = destination_of(trace_id)
        return found

    targets = [destination(trace_id) for trace_id in trace_ids]
    distinct = set(cache.values())
    if len(distinct) == 1:
        (only,) = distinct
        part = SpanBatch(list(trace_ids), list(batch.spans), list(batch.origins))
        part.root_positions = set(batch.root_positions)
        return {only: part}
    parts: dict[K, SpanBatch] = {}
    for target in distinct:
        mask = [t == target for t in targets]
        part = SpanBatch(
            list(compress(trace_ids, mask)),
            list(compress(batch.spans, mask)),
            list(compress(batch.origins, mask)),
        )
        if batch.root_positions:
            # A root's position in the part is the number of the part's spans before it.
            position = {index: n for n, index in enumerate(compress(range(len(mask)), mask))}
            part.root_positions = {
                position[r] for r in batch.root_positions if targets[r] == target
            }
        parts[target] = part
    return parts
