"""Per-sampler metrics, read from the rules engine at scrape time.

A custom collector rather than long-lived metric objects: the set of samplers changes when the
rules are reloaded, and reading the engine's own counters at scrape time means a removed sampler's
series simply disappear and nothing is updated on the decision path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class KeyRateView(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def rate(self) -> int: ...


class GoalView(Protocol):
    @property
    def reachable(self) -> bool: ...


class SamplerStatsView(Protocol):
    """What the collector reads of `decide.stats.SamplerStats`."""

    @property
    def sampler(self) -> str: ...
    @property
    def kept_traces(self) -> int: ...
    @property
    def dropped_traces(self) -> int: ...
    @property
    def kept_spans(self) -> int: ...
    @property
    def seen_spans(self) -> int: ...
    @property
    def late_spans(self) -> int: ...
    @property
    def keys(self) -> int: ...
    @property
    def top_keys(self) -> Sequence[KeyRateView]: ...
    @property
    def goal(self) -> GoalView: ...
    @property
    def window_keys_kept_ratio(self) -> float | None: ...
    @property
    def goal_sample_rate(self) -> float: ...
    @property
    def goal_spans_per_sec(self) -> float: ...


class SamplerCollector(Collector):
    """Publishes every adaptive sampler's counts, key cardinality, top keys' rates, the share of
    its active keys kept per window, and its goal."""

    def __init__(self, stats: Callable[[], Sequence[SamplerStatsView]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        traces = CounterMetricFamily(
            "refinery_sampler_traces",
            "Traces an adaptive sampler decided, by sampler and decision (since it was built).",
            labels=["sampler", "decision"],
        )
        spans = CounterMetricFamily(
            "refinery_sampler_spans",
            "Spans an adaptive sampler counted: seen, kept, and late (arrived after the decision).",
            labels=["sampler", "kind"],
        )
        keys = GaugeMetricFamily(
            "refinery_sampler_keys",
            "Distinct keys an adaptive sampler tracks (its key cardinality).",
            labels=["sampler"],
        )
        rates = GaugeMetricFamily(
            "refinery_sampler_key_sample_rate",
            "Current sample rate of a sampler's heaviest keys (at most 20 per sampler).",
            labels=["sampler", "key"],
        )
        covered = GaugeMetricFamily(
            "refinery_sampler_window_keys_kept_ratio",
            "Share of the keys active in a sampler's last window that kept at least one trace "
            "there (1 while every key keeps its floor; absent before a window ended).",
            labels=["sampler"],
        )
        unreachable = GaugeMetricFamily(
            "refinery_sampler_goal_unreachable",
            "1 when the sampler's last window could not meet its goal (see the log), else 0.",
            labels=["sampler"],
        )
        goal_rate = GaugeMetricFamily(
            "refinery_sampler_goal_sample_rate",
            "The average sample rate a dynamic sampler aims at (GoalSampleRate / SampleRate).",
            labels=["sampler"],
        )
        goal_throughput = GaugeMetricFamily(
            "refinery_sampler_goal_spans_per_second",
            "Kept spans per second a throughput sampler aims at in this process "
            "(GoalThroughputPerSec, divided among the workers and nodes that share it).",
            labels=["sampler"],
        )
        for stats in self._stats():
            name = stats.sampler
            traces.add_metric([name, "kept"], stats.kept_traces)
            traces.add_metric([name, "dropped"], stats.dropped_traces)
            spans.add_metric([name, "seen"], stats.seen_spans)
            spans.add_metric([name, "kept"], stats.kept_spans)
            spans.add_metric([name, "late"], stats.late_spans)
            keys.add_metric([name], stats.keys)
            for key_rate in stats.top_keys:
                rates.add_metric([name, key_rate.key], key_rate.rate)
            ratio = stats.window_keys_kept_ratio
            if ratio is not None:
                covered.add_metric([name], ratio)
            unreachable.add_metric([name], 0 if stats.goal.reachable else 1)
            if stats.goal_sample_rate:
                goal_rate.add_metric([name], stats.goal_sample_rate)
            if stats.goal_spans_per_sec:
                goal_throughput.add_metric([name], stats.goal_spans_per_sec)
        yield from (traces, spans, keys, rates, covered, unreachable, goal_rate, goal_throughput)

    def describe(self) -> Iterator[Metric]:
        return iter(())
