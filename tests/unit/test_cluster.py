"""Ownership of trace IDs, and splitting batches by owner."""

from __future__ import annotations

import random

import pytest

from refinery_py.cluster.ownership import Ownership
from refinery_py.cluster.router import split_by_owner
from refinery_py.model import Origin, SpanBatch


def ids(count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(16) for _ in range(count)]


def test_owners_are_balanced_and_agree_across_members() -> None:
    members = ["a:1", "b:1", "c:1"]
    views = [Ownership(members, i) for i in range(3)]
    trace_ids = ids(30_000)
    owners = [views[0].owner_of(t) for t in trace_ids]
    assert all(
        view.owner_of(t) == o for view in views[1:] for t, o in zip(trace_ids, owners, strict=True)
    )
    for member in range(3):
        assert owners.count(member) == pytest.approx(10_000, rel=0.05)


def test_a_membership_change_moves_only_the_traces_it_must() -> None:
    trace_ids = ids(30_000, seed=2)
    before = Ownership(["a:1", "b:1", "c:1"], 0)
    after = Ownership(["a:1", "b:1", "c:1", "d:1"], 0)
    moved = [
        t
        for t in trace_ids
        if before.members[before.owner_of(t)] != after.members[after.owner_of(t)]
    ]
    assert all(after.members[after.owner_of(t)] == "d:1" for t in moved)
    assert len(moved) == pytest.approx(7_500, rel=0.06)
    reordered = Ownership(["c:1", "a:1", "b:1"], 0)
    assert all(
        before.members[before.owner_of(t)] == reordered.members[reordered.owner_of(t)]
        for t in trace_ids
    )


def test_split_keeps_every_span_with_its_origin_and_root_flag() -> None:
    ownership = Ownership(["a:1", "b:1"], 0)
    origins = [Origin(b"r%d" % i, b"s") for i in range(3)]
    batch = SpanBatch()
    trace_ids = ids(50, seed=3)
    for n in range(200):
        batch.trace_ids.append(trace_ids[n % 50])
        batch.spans.append(b"span-%d" % n)
        batch.origins.append(origins[n % 3])
        if n % 7 == 0:
            batch.root_positions.add(n)
    parts = split_by_owner(batch, ownership)
    assert set(parts) == {0, 1}
    seen = []
    for member, part in parts.items():
        assert all(ownership.owner_of(t) == member for t in part.trace_ids)
        for index, span in enumerate(part.spans):
            n = int(span.split(b"-")[1])
            seen.append(n)
            assert part.origins[index] is origins[n % 3]
            assert part.trace_ids[index] == trace_ids[n % 50]
            assert (index in part.root_positions) == (n % 7 == 0)
    assert sorted(seen) == list(range(200))


def test_ownership_rejects_bad_member_lists() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Ownership([], 0)
    with pytest.raises(ValueError, match="unique"):
        Ownership(["a:1", "a:1"], 0)
    with pytest.raises(ValueError, match="self_index"):
        Ownership(["a:1"], 1)
