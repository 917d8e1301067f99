"""Ownership of trace IDs: rendezvous over nodes, then over a node's workers."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from refinery_py.cluster.ownership import Doors, Placement, worker_of
from refinery_py.cluster.router import split_off
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


def _mixed_batch(origins: list[Origin], trace_ids: list[bytes]) -> SpanBatch:
    batch = SpanBatch()
    for n in range(200):
        batch.trace_ids.append(trace_ids[n % 50])
        batch.spans.append(b"span-%d" % n)
        batch.origins.append(origins[n % 3])
        if n % 7 == 0:
            batch.root_positions.add(n)
    return batch


def test_split_off_keeps_its_own_and_picks_out_the_rest_with_roots_and_sizes() -> None:
    placement = Placement(NODES, NODES[0])
    origins = [Origin(b"r%d" % i, b"s") for i in range(3)]
    trace_ids = ids(50, seed=5)
    batch = _mixed_batch(origins, trace_ids)
    kept, others = split_off(batch, placement.node_of, NODES[0])
    assert set(others) == set(NODES[1:])
    assert kept is not batch
    assert all(placement.node_of(t) == NODES[0] for t in kept.trace_ids)
    seen = []
    for index, span in enumerate(kept.spans):
        n = int(span.split(b"-")[1])
        seen.append(n)
        assert kept.origins[index] is origins[n % 3]
        assert kept.trace_ids[index] == trace_ids[n % 50]
        assert (index in kept.root_positions) == (n % 7 == 0)
    for node, picked in others.items():
        assert picked.spans == sorted(picked.spans)  # in the batch's order
        assert all(placement.node_of(batch.trace_ids[i]) == node for i in picked.spans)
        roots = [k for k, i in enumerate(picked.spans) if i in batch.root_positions]
        assert picked.roots == roots
        assert picked.size == sum(len(batch.spans[i]) for i in picked.spans)
        seen.extend(picked.spans)
    assert sorted(seen) == list(range(200))


def test_split_off_of_a_batch_that_stays_whole_is_the_batch_itself() -> None:
    # An owner checks every batch it is sent; copying it when all of it stays would be waste.
    placement = Placement.single("a:1")
    batch = SpanBatch(ids(5, seed=4), [b"s%d" % n for n in range(5)], [Origin(b"r", b"s")] * 5)
    kept, others = split_off(batch, placement.node_of, "a:1")
    assert kept is batch
    assert others == {}
    kept, others = split_off(batch, placement.node_of, "b:1")  # none of it stays
    assert kept.span_count == 0
    assert others["a:1"].spans == list(range(5))


def test_doors_name_this_worker_a_sibling_or_the_owning_nodes_worker_once_known() -> None:
    siblings = ("unix:/run/w0", "unix:/run/w1", "unix:/run/w2")
    placement = Placement(NODES, NODES[0], workers=3, self_worker=1)
    directory: dict[str, tuple[str, ...]] = {}
    doors = Doors(placement, siblings, directory)
    trace_ids = ids(3000, seed=6)
    for trace_id in trace_ids:
        node = placement.node_of(trace_id)
        door = doors(trace_id)
        if node != NODES[0]:
            assert door == node  # its workers not known yet: the node's advertised address
        elif worker_of(trace_id, 3) == 1:
            assert door == ""  # this very worker
        else:
            assert door == siblings[worker_of(trace_id, 3)]
    # The forwarder learns a node's worker doors into the same dict: they are used at once.
    directory[NODES[1]] = ("10.0.0.2:4319", "10.0.0.2:4320")
    for trace_id in trace_ids:
        if placement.node_of(trace_id) == NODES[1]:
            assert doors(trace_id) == directory[NODES[1]][worker_of(trace_id, 2)]
