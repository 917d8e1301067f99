"""Ownership of trace IDs: rendezvous over nodes, then over a node's workers."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from refinery_py.cluster.ownership import Placement, worker_of
from refinery_py.cluster.router import split_by
from refinery_py.model import Origin, SpanBatch

NODES = ["10.0.0.1:4319", "10.0.0.2:4319", "10.0.0.3:4319"]


def ids(count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(16) for _ in range(count)]


def test_every_member_computes_the_same_owner_and_the_load_is_balanced() -> None:
    views = [Placement(NODES, node) for node in NODES]
    trace_ids = ids(30_000)
    owners = [views[0].node_of(t) for t in trace_ids]
    for view in views[1:]:
        assert [view.node_of(t) for t in trace_ids] == owners
    counts = Counter(owners)
    for node in NODES:
        assert counts[node] == pytest.approx(10_000, rel=0.05)
    # Exactly one worker of exactly one node owns each trace.
    workers = [Placement(NODES, node, 2, w) for node in NODES for w in range(2)]
    for trace_id in trace_ids[:2000]:
        assert sum(p.owns(trace_id) for p in workers) == 1


def test_a_join_moves_only_the_traces_the_new_node_wins() -> None:
    trace_ids = ids(30_000, seed=2)
    before = Placement(NODES, NODES[0])
    after = Placement([*NODES, "10.0.0.4:4319"], NODES[0])
    moved = [t for t in trace_ids if before.node_of(t) != after.node_of(t)]
    assert all(after.node_of(t) == "10.0.0.4:4319" for t in moved)
    assert len(moved) == pytest.approx(7_500, rel=0.06)


def test_a_leave_moves_only_the_leaving_nodes_traces() -> None:
    trace_ids = ids(30_000, seed=3)
    before = Placement(NODES, NODES[0])
    after = Placement(NODES[:2], NODES[0])
    for trace_id in trace_ids:
        if before.node_of(trace_id) != NODES[2]:
            assert after.node_of(trace_id) == before.node_of(trace_id)


def test_owners_do_not_depend_on_the_order_of_the_list() -> None:
    trace_ids = ids(5_000, seed=4)
    one = Placement(NODES, NODES[0])
    other = Placement(list(reversed(NODES)), NODES[0])
    assert all(one.node_of(t) == other.node_of(t) for t in trace_ids)


def test_worker_choice_is_independent_of_the_node_choice() -> None:
    trace_ids = ids(30_000, seed=5)
    placement = Placement(NODES, NODES[0])
    mine = [t for t in trace_ids if placement.node_of(t) == NODES[0]]
    counts = Counter(worker_of(t, 4) for t in mine)
    for worker in range(4):
        assert counts[worker] == pytest.approx(len(mine) / 4, rel=0.1)


def test_a_leaving_node_owns_nothing() -> None:
    placement = Placement(NODES[1:], NODES[0])
    assert not placement.member
    assert not any(placement.owns(t) for t in ids(1000, seed=6))


def test_bad_placements_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Placement(["a:1", "a:1"], "a:1")
    with pytest.raises(ValueError, match="worker"):
        Placement(["a:1"], "a:1", 2, 2)


def test_split_keeps_every_span_with_its_origin_and_root_flag() -> None:
    placement = Placement(["a:1", "b:1"], "a:1")
    origins = [Origin(b"r%d" % i, b"s") for i in range(3)]
    batch = SpanBatch()
    trace_ids = ids(50, seed=3)
    for n in range(200):
        batch.trace_ids.append(trace_ids[n % 50])
        batch.spans.append(b"span-%d" % n)
        batch.origins.append(origins[n % 3])
        if n % 7 == 0:
            batch.root_positions.add(n)
    parts = split_by(batch, placement.node_of)
    assert set(parts) == {"a:1", "b:1"}
    seen = []
    for node, part in parts.items():
        assert all(placement.node_of(t) == node for t in part.trace_ids)
        for index, span in enumerate(part.spans):
            n = int(span.split(b"-")[1])
            seen.append(n)
            assert part.origins[index] is origins[n % 3]
            assert part.trace_ids[index] == trace_ids[n % 50]
            assert (index in part.root_positions) == (n % 7 == 0)
    assert sorted(seen) == list(range(200))


def test_split_to_one_destination_is_the_batch_itself() -> None:
    # An owner checks every batch it is sent; copying it when all of it stays would be waste.
    placement = Placement.single("a:1")
    batch = SpanBatch(ids(5, seed=4), [b"s%d" % n for n in range(5)], [Origin(b"r", b"s")] * 5)
    batch.root_positions.add(2)
    assert split_by(batch, placement.node_of) == {"a:1": batch}
    assert split_by(batch, placement.node_of)["a:1"] is batch
    assert split_by(SpanBatch(), placement.node_of) == {}
