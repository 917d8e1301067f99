"""The goal of the three throughput samplers (kept spans per second, and per-key fairness),
and the base class they share.

`GoalThroughputPerSec` counts spans, as in Refinery: a trace of 30 spans uses 30 of it. With
`UseClusterSize` the goal is for the whole cluster and each node aims for goal / nodes (at least
1 span/s, as in Refinery); the engine tells samplers the node count.

Fairness (refinery_py's, for the noisy-neighbour problem of a multi-tenant service; key the
sampler on the customer field to make it per customer):

- `PerKeyMaxShare` (0 < s ≤ 1): no key's allotment exceeds s × the budget, so one customer
  flooding the node cannot take over the kept traces. When the caps leave budget that traffic
  could fill unused (say 3 busy keys at 0.2 each), the goal is reported unreachable.
- `PerKeyMinPerSec` (spans/s, ≥ 0): every active key is allotted at least this much (or all its
  traffic if it sends less) before the rest is shared out, so a small customer keeps a steady
  trickle however busy the others are. Like the goal it is per cluster under `UseClusterSize`.
  When keys × minimum exceeds the goal, each key keeps one trace and the minimums are scaled
  down to fit; the goal is reported unreachable with the numbers.

Both act on the allotment (see `allotment`), so they hold per window in expectation, the same
way the goal itself does.
"""

from __future__ import annotations

from dataclasses import dataclass

from refinery_py.config.rules_spec import (
    EMAThroughputSpec,
    TotalThroughputSpec,
    WindowedThroughputSpec,
)
from refinery_py.decide.allotment import Allotment
from refinery_py.decide.keyed import KeyedSampler
from refinery_py.decide.trace_key import TraceKey

ThroughputSpec = EMAThroughputSpec | WindowedThroughputSpec | TotalThroughputSpec


@dataclass(frozen=True, slots=True)
class ThroughputOptions:
    """The throughput options every throughput spec has."""

    goal_throughput_per_sec: int
    use_cluster_size: bool
    per_key_min_per_sec: float
    per_key_max_share: float

    @classmethod
    def of(cls, spec: ThroughputSpec) -> ThroughputOptions:
        return cls(
            spec.goal_throughput_per_sec,
            spec.use_cluster_size,
            spec.per_key_min_per_sec,
            spec.per_key_max_share,
        )


class ThroughputGoal:
    """A throughput goal, adjusted for the cluster size and for this node's worker processes.

    A node's goal is shared by its workers (each decides the traces it owns, about 1/workers of
    the node's traffic), whatever `UseClusterSize` says; the cluster's nodes share it only under
    `UseClusterSize`.
    """

    __slots__ = ("_nodes", "_options", "_workers")

    def __init__(self, options: ThroughputOptions) -> None:
        self._options = options
        self._nodes = 1
        self._workers = 1

    def set_cluster_size(self, nodes: int, workers: int = 1) -> None:
        self._nodes = max(1, nodes)
        self._workers = max(1, workers)

    @property
    def _divisor(self) -> int:
        return (self._nodes if self._options.use_cluster_size else 1) * self._workers

    @property
    def per_second(self) -> float:
        """Kept spans per second this node aims for."""
        return max(1.0, self._options.goal_throughput_per_sec / self._divisor)

    def budget(self, seconds: float) -> float:
        """Kept spans allowed over `seconds`."""
        return self.per_second * seconds

    def min_per_key(self, seconds: float) -> float:
        """The PerKeyMinPerSec floor over `seconds`, for this node."""
        return self._options.per_key_min_per_sec / self._divisor * seconds

    @property
    def max_share(self) -> float:
        return self._options.per_key_max_share

    def text(self) -> str:
        goal = self._options.goal_throughput_per_sec
        if self._divisor == 1:
            return f"GoalThroughputPerSec {goal}"
        return (
            f"GoalThroughputPerSec {goal} ({self.per_second:g} for this process: "
            f"{self._nodes} node(s), {self._workers} worker(s) per node)"
        )

    def achievable(self, kept_spans: float, seconds: float) -> str:
        return f"{kept_spans / seconds:.1f} spans/s"


class ThroughputSampler(KeyedSampler):
    """A keyed sampler whose window target is a `ThroughputGoal` (the three throughput samplers).

    Subclasses plan their windows (`_close`); the goal, its text in reports and the cluster size
    it is divided by live here.
    """

    __slots__ = ("_goal",)

    def __init__(
        self, spec: ThroughputSpec, name: str, *, interval: float, initial_rate: int
    ) -> None:
        super().__init__(
            name=name,
            key=TraceKey(spec.field_list, spec.use_trace_length),
            interval=interval,
            max_keys=spec.max_keys,
            initial_rate=initial_rate,
        )
        self._goal = ThroughputGoal(ThroughputOptions.of(spec))

    def set_cluster_size(self, nodes: int, workers: int = 1) -> None:
        """Nodes sharing the goal; takes effect at the next recomputation."""
        self._goal.set_cluster_size(nodes, workers)

    def _target(self, spans: int, elapsed: float) -> float:
        return self._goal.budget(elapsed)

    def _goal_text(self) -> str:
        return self._goal.text()

    def _goal_numbers(self) -> tuple[float, float]:
        return 0.0, self._goal.per_second

    def _achievable(self, kept_spans: float, allotment: Allotment) -> str:
        return self._goal.achievable(kept_spans, self._period)
