"""Split a batch of spans by where each span's trace must go."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TypeVar

from refinery_py.model import SpanBatch

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class Picked:
    """One destination's share of a batch, as positions in it (see `split_off`)."""

    spans: list[int] = field(default_factory=list)
    """Positions of its spans in the batch, in order."""
    roots: list[int] = field(default_factory=list)
    """Positions in `spans` that hold root spans, ascending."""
    size: int = 0
    """Its spans' bytes."""


def split_off(
    batch: SpanBatch, destination_of: Callable[[bytes], K], keep: K
) -> tuple[SpanBatch, dict[K, Picked]]:
    """The spans whose destination is `keep`, as a batch (`batch` itself when that is all of
    them), and the others' positions by destination; destinations with no span are absent.

    The destination is computed once per distinct trace. The spans that leave are only picked
    out, not copied into batches of their own: a forwarder encodes them straight from `batch`
    (`batch_codec.encode_selected`), while the request is still in the CPU's caches. Rejected-
    span counts stay with the caller, since they were already reported to the client.
    """
    trace_ids = batch.trace_ids
    targets: dict[bytes, K] = {}
    for trace_id in trace_ids:
        if trace_id not in targets:
            targets[trace_id] = destination_of(trace_id)
    others: dict[K, Picked] = {}
    for target in targets.values():
        if target != keep and target not in others:
            others[target] = Picked()
    if not others:
        return batch, others
    kept = SpanBatch()
    kept_ids, kept_spans, kept_origins, kept_roots = (
        kept.trace_ids,
        kept.spans,
        kept.origins,
        kept.root_positions,
    )
    spans = batch.spans
    origins = batch.origins
    roots = sorted(batch.root_positions)
    next_root = 0
    root = roots[0] if roots else -1
    for index, trace_id in enumerate(trace_ids):
        target = targets[trace_id]
        is_root = index == root
        if is_root:
            next_root += 1
            root = roots[next_root] if next_root < len(roots) else -1
        if target == keep:
            if is_root:
                kept_roots.add(len(kept_spans))
            kept_ids.append(trace_id)
            kept_spans.append(spans[index])
            kept_origins.append(origins[index])
        else:
            picked = others[target]
            if is_root:
                picked.roots.append(len(picked.spans))
            picked.spans.append(index)
            picked.size += len(spans[index])
    return kept, others
