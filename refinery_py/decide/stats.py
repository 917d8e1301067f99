"""What an adaptive sampler reports about itself: plain data for metrics and logs.

`decide/` never touches prometheus or a logger; the pipeline reads `RulesEngine.stats()` and
`RulesEngine.take_goal_reports()` and turns them into metrics and log lines. Every string here
has bounded cardinality: sampler names come from the rules file, and at most `TOP_KEYS` keys
per sampler are listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

TOP_KEYS = 20
"""Keys listed per sampler in `SamplerStats.top_keys`, the heaviest first."""


@dataclass(frozen=True, slots=True)
class KeyRate:
    """One key's current sample rate and the traffic it was computed from."""

    key: str
    rate: int
    spans_per_window: float
    """Spans expected per window for this key (the last window's, or the moving average)."""


@dataclass(frozen=True, slots=True)
class GoalStatus:
    """Whether the sampler could meet its goal in a window, with the numbers when it could not.

    `window` counts the windows the sampler has closed (0 before the first one ends); a status
    belongs to the window it names. `budget` is the kept spans the goal allows per window,
    `needed` what one trace per key (or the `PerKeyMinPerSec` floors) would take.
    """

    sampler: str
    window: int
    reachable: bool
    message: str = ""
    keys: int = 0
    budget: float = 0.0
    needed: float = 0.0


@dataclass(frozen=True, slots=True)
class SamplerStats:
    """One adaptive sampler's counters and state. Counts are totals since it was built; a
    sampler kept across a rules reload keeps counting."""

    sampler: str
    """Stable name, the `sampler` metric label: `<target>:<type>` or `<target>/<rule>:<type>`."""
    kind: str
    """The sampler type as written in the rules file, e.g. `EMADynamicSampler`."""
    kept_traces: int
    dropped_traces: int
    kept_spans: int
    """Spans of kept traces, late spans of kept traces included."""
    seen_spans: int
    late_spans: int
    """Spans that arrived after their trace was decided and were counted toward the goal."""
    keys: int
    """Keys with a learned rate: the key cardinality."""
    overflow_traces: int
    """Traces counted in a window's tail: their key lost its slot among the `MaxKeys` counted
    exactly (the tail is planned as a group of keys alike)."""
    bursts: int
    """Early recomputations triggered by burst detection (EMA samplers)."""
    correction: float
    """The factor the feedback applies to the goal's budget (1 when predictions are unbiased)."""
    top_keys: tuple[KeyRate, ...]
    goal: GoalStatus
    window_keys: int = 0
    """Distinct keys in the last floor window that had traffic (counted up to the sampler's
    cap of remembered keys); 0 before one ended."""
    window_keys_kept: int = 0
    """How many of those kept at least one trace there."""

    @property
    def window_keys_kept_ratio(self) -> float | None:
        """The share of the last floor window's active keys that kept a trace; None before one
        ended."""
        return self.window_keys_kept / self.window_keys if self.window_keys else None

    goal_sample_rate: float = 0.0
    """The average sample rate a dynamic sampler aims at; 0 for a throughput sampler."""
    goal_spans_per_sec: float = 0.0
    """Kept spans per second a throughput sampler aims at in this process (its share of the
    goal when workers or nodes share it); 0 for a dynamic sampler."""


class Adaptive(Protocol):
    """A sampler that learns from traffic: what the engine needs besides `Sampler`."""

    def count_late(self, key: str, spans: int, kept: bool, now: float) -> None:
        """Count spans that arrived after their trace was decided (with key `key`)."""
        ...

    def stats(self) -> SamplerStats:
        """Counters and the current goal status."""
        ...

    def take_goal_reports(self) -> list[GoalStatus]:
        """Unreachable-goal statuses of the windows ended since the last call, oldest first."""
        ...


@runtime_checkable
class ClusterAware(Protocol):
    """A sampler whose goal is shared by the nodes of a cluster (`UseClusterSize`)."""

    def set_cluster_size(self, nodes: int, workers: int = 1) -> None:
        """The number of nodes now sharing the goal (at least 1)."""
        ...
