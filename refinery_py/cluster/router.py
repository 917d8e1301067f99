"""Split a batch of spans by where each span's trace must go."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from refinery_py.model import SpanBatch

K = TypeVar("K", bound=Hashable)


def split_by(batch: SpanBatch, destination_of: Callable[[bytes], K]) -> dict[K, SpanBatch]:
    """The batch's spans grouped by `destination_of(trace_id)`; empty groups are absent.

    The destination is computed once per distinct trace. When every span goes to one place (an
    owner checking what it was sent, one node on its own) the batch itself is that group, not a
    copy; otherwise each span is appended to its group in one pass. Rejected-span counts stay
    with the caller, since they were already reported to the client.
    """
    trace_ids = batch.trace_ids
    targets: dict[bytes, K] = {}
    for trace_id in trace_ids:
        if trace_id not in targets:
            targets[trace_id] = destination_of(trace_id)
    distinct = set(targets.values())
    if len(distinct) <= 1:
        return dict.fromkeys(distinct, batch)
    parts = {target: SpanBatch() for target in distinct}
    # The lists themselves, not the batches: attribute reads per span would cost more than the
    # appends.
    lists_of = {
        trace_id: (part.trace_ids, part.spans, part.origins, part.root_positions)
        for trace_id, part in ((t, parts[target]) for t, target in targets.items())
    }
    spans = batch.spans
    origins = batch.origins
    roots = sorted(batch.root_positions)
    next_root = 0
    root = roots[0] if roots else -1
    for index, trace_id in enumerate(trace_ids):
        ids, its_spans, its_origins, its_roots = lists_of[trace_id]
        if index == root:
            its_roots.add(len(its_spans))  # its position in the part
            next_root += 1
            root = roots[next_root] if next_root < len(roots) else -1
        ids.append(trace_id)
        its_spans.append(spans[index])
        its_origins.append(origins[index])
    return parts
