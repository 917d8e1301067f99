"""Split a batch of spans by the member that owns each span's trace."""

from __future__ import annotations

from itertools import compress

from refinery_py.cluster.ownership import Ownership
from refinery_py.model import SpanBatch


def split_by_owner(batch: SpanBatch, ownership: Ownership) -> dict[int, SpanBatch]:
    """The batch's spans grouped by owner index (ours included); empty owners are absent.

    The owner is computed once per distinct trace; the spans are then filtered per owner with
    `itertools.compress`, so the per-span work is a dict lookup and C-level copying. Rejected-span
    counts stay with the caller, since they were already reported to the client.
    """
    trace_ids = batch.trace_ids
    cache: dict[bytes, int] = {}
    owner_of = ownership.owner_of

    def owner(trace_id: bytes) -> int:
        found = cache.get(trace_id)
        if found is None:
            found = cache[trace_id] = owner_of(trace_id)
        return found

    owners = [owner(trace_id) for trace_id in trace_ids]
    distinct = set(cache.values())
    if len(distinct) == 1:
        (only,) = distinct
        part = SpanBatch(list(trace_ids), list(batch.spans), list(batch.origins))
        part.root_positions = set(batch.root_positions)
        return {only: part}
    parts: dict[int, SpanBatch] = {}
    for member in distinct:
        mask = [o == member for o in owners]
        part = SpanBatch(
            list(compress(trace_ids, mask)),
            list(compress(batch.spans, mask)),
            list(compress(batch.origins, mask)),
        )
        if batch.root_positions:
            # A root's position in the part is the number of the part's spans before it.
            position = {index: n for n, index in enumerate(compress(range(len(mask)), mask))}
            part.root_positions = {position[r] for r in batch.root_positions if owners[r] == member}
        parts[member] = part
    return parts
