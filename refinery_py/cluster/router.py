"""Split a batch of spans by the member that owns each span's trace."""

from __future__ import annotations

from refinery_py.cluster.ownership import Ownership
from refinery_py.model import SpanBatch


def split_by_owner(batch: SpanBatch, ownership: Ownership) -> dict[int, SpanBatch]:
    """The batch's spans grouped by owner index (ours included); empty owners are absent.

    The owner is computed once per distinct trace in the batch. Rejected-span counts stay with
    the local part, since they were already reported to the client.
    """
    owners: dict[bytes, int] = {}
    parts: dict[int, SpanBatch] = {}
    roots = batch.root_positions
    owner_of = ownership.owner_of
    for index, trace_id in enumerate(batch.trace_ids):
        owner = owners.get(trace_id)
        if owner is None:
            owner = owners[trace_id] = owner_of(trace_id)
        part = parts.get(owner)
        if part is None:
            part = parts[owner] = SpanBatch()
        if roots and index in roots:
            part.root_positions.add(len(part.spans))
        part.trace_ids.append(trace_id)
        part.spans.append(batch.spans[index])
        part.origins.append(batch.origins[index])
    return parts
