"""Which node, and which worker process in it, owns a trace ID: rendezvous hashing, twice.

A cluster is a set of nodes named by their advertised peer addresses; a node runs one or more
worker processes. Ownership is decided in two steps with independent hashes:

1. the owning node: rendezvous (highest-random-weight) hashing of the trace ID over the nodes;
2. the owning worker within that node: rendezvous hashing over its worker indices.

Why node-then-worker rather than every worker as a member of one flat list: the member lists that
users configure and that Redis, DNS or Kubernetes hand out name nodes, and the nodes must agree
on them exactly; a node's worker count is its own business. With two steps, members that
disagree about some node's worker count (a restart with another `--workers`, a count not learned
yet) still agree on the owning node, and that node is the authority on its workers: a span sent
to the wrong worker is passed on inside the node. Senders that know the owning node's worker
count address the owning worker directly, so a span reaches its owner in one hop.

Rendezvous hashing moves only what a change must move: when a node joins it takes about 1/n of
the traces from the others and nothing else moves; when one leaves only its traces move. Scores
depend on a member's name, never on its position in a list.
"""

from __future__ import annotations

from collections.abc import Sequence

import xxhash

_WORKER_SEED_SALT = b"refinery_py worker "


def _seed(name: str) -> int:
    return xxhash.xxh64_intdigest(name.encode())


_WORKER_SEEDS = tuple(xxhash.xxh64_intdigest(_WORKER_SEED_SALT + bytes([n])) for n in range(256))
"""Seeds for worker indices 0..255 (a node has at most one worker per core)."""


def worker_of(trace_id: bytes, workers: int) -> int:
    """The worker index, out of `workers`, that owns `trace_id` within its node."""
    if workers <= 1:
        return 0
    best_index = 0
    best_score = -1
    for index in range(workers):
        score = xxhash.xxh64_intdigest(trace_id, _WORKER_SEEDS[index])
        if score > best_score:
            best_index, best_score = index, score
    return best_index


class Placement:
    """The owner of every trace ID for one view of the cluster, from one worker's point of view.

    `nodes` are the member nodes (stable names: advertised `host:port`), `self_node` the node
    this process belongs to (it may be absent from `nodes`: a node that is leaving owns nothing),
    `workers` that node's worker count and `self_worker` this process's index in it.
    """

    __slots__ = ("_seeds", "nodes", "self_node", "self_worker", "workers")

    def __init__(
        self, nodes: Sequence[str], self_node: str, workers: int = 1, self_worker: int = 0
    ) -> None:
        if len(set(nodes)) != len(nodes):
            raise ValueError("node names must be unique")
        if workers < 1 or not 0 <= self_worker < workers:
            raise ValueError(f"worker {self_worker} is not one of {workers} workers")
        if workers > len(_WORKER_SEEDS):
            raise ValueError(f"at most {len(_WORKER_SEEDS)} workers per node")
        self.nodes = tuple(sorted(nodes))
        self.self_node = self_node
        self.workers = workers
        self.self_worker = self_worker
        self._seeds = tuple(_seed(name) for name in self.nodes)

    @classmethod
    def single(cls, name: str, workers: int = 1, self_worker: int = 0) -> Placement:
        """A node on its own."""
        return cls((name,), name, workers, self_worker)

    @property
    def member(self) -> bool:
        """Whether this node is one of the nodes (a leaving node is not)."""
        return self.self_node in self.nodes

    def node_of(self, trace_id: bytes) -> str:
        """The node that owns `trace_id` ("" when there are no nodes at all)."""
        seeds = self._seeds
        if len(seeds) == 1:
            return self.nodes[0]
        best_index = -1
        best_score = -1
        for index, seed in enumerate(seeds):
            score = xxhash.xxh64_intdigest(trace_id, seed)
            if score > best_score:
                best_index, best_score = index, score
        return self.nodes[best_index] if best_index >= 0 else ""

    def owns(self, trace_id: bytes) -> bool:
        """Whether this very worker owns `trace_id`."""
        return (
            self.node_of(trace_id) == self.self_node
            and worker_of(trace_id, self.workers) == self.self_worker
        )

    def same_owners(self, other: Placement) -> bool:
        """Whether `other` assigns every trace to the same node and worker as this one."""
        return (self.nodes, self.self_node, self.workers, self.self_worker) == (
            other.nodes,
            other.self_node,
            other.workers,
            other.self_worker,
        )


class Doors:
    """The door that owns a trace ID, from one worker's point of view: "" for this very worker,
    a sibling worker's door, another node's worker door, or that node's advertised address while
    its worker doors are not known (it passes the spans on inside the node).

    Called once per distinct trace of every request, so it is compiled with the rest of this
    module. `directory` (other nodes' worker doors, by node) is the forwarder's own dict, read
    as it changes; a new placement needs a new Doors.
    """

    __slots__ = ("_directory", "_siblings", "placement")

    def __init__(
        self,
        placement: Placement,
        sibling_doors: tuple[str, ...],
        directory: dict[str, tuple[str, ...]],
    ) -> None:
        self.placement = placement
        self._siblings = sibling_doors
        self._directory = directory

    def __call__(self, trace_id: bytes) -> str:
        placement = self.placement
        node = placement.node_of(trace_id)
        if node == placement.self_node or not node:
            worker = worker_of(trace_id, placement.workers)
            return "" if worker == placement.self_worker else self._siblings[worker]
        doors = self._directory.get(node)
        if not doors:
            return node
        return doors[worker_of(trace_id, len(doors))]
