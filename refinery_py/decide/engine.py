"""The rules file as a whole: one sampler per target, and which target a trace belongs to.

It is also the pipeline's handle on the adaptive samplers: late spans (`count_late`), the node
count (`set_cluster_size`), their numbers (`stats`) and their missed goals (`take_goal_reports`).

Refinery picks the target from the API key's environment; refinery_py reads it from the trace
(as the README says): `deployment.environment.name` (or the older `deployment.environment`)
when a sampler is configured under that name, else `service.name` when one is, else `__default__`.
"""

from __future__ import annotations

from refinery_py.config.rules_spec import (
    DEFAULT_TARGET,
    DeterministicSpec,
    DynamicSpec,
    EMADynamicSpec,
    EMAThroughputSpec,
    RulesBasedSpec,
    RulesSpec,
    SamplerSpec,
)
from refinery_py.decide.factory import Placed, SamplerFactory, build_sampler
from refinery_py.decide.keyed import KeyedSampler
from refinery_py.decide.rules import RulesBasedSampler
from refinery_py.decide.sampler import Sampler
from refinery_py.decide.stats import ClusterAware, GoalStatus, SamplerStats
from refinery_py.model import Decision, TraceView

__all__ = ["ENVIRONMENT_FIELDS", "SERVICE_FIELD", "RulesEngine", "build_sampler"]

ENVIRONMENT_FIELDS = ("deployment.environment.name", "deployment.environment")
SERVICE_FIELD = "service.name"


class RulesEngine:
    """Every target's sampler, built once from a RulesSpec; decides traces by their target.

    `previous` is the engine being replaced on a rules reload: each adaptive sampler whose spec
    is unchanged at the same place (target, rule) is taken over with what it has learned, and
    the node count set on it carries over. The previous engine must not be used afterwards (the
    samplers it shares with this one would count twice).
    """

    __slots__ = (
        "_adaptive",
        "_fields",
        "_named_targets",
        "_nodes",
        "_samplers",
        "_spec",
        "_workers",
        "reused",
    )

    def __init__(self, spec: RulesSpec, previous: RulesEngine | None = None) -> None:
        if DEFAULT_TARGET not in spec.samplers:
            raise ValueError(f"rules have no {DEFAULT_TARGET} sampler")
        factory = SamplerFactory(previous._adaptive if previous is not None else None)
        self._samplers = {
            target: factory.build(sampler_spec, target)
            for target, sampler_spec in spec.samplers.items()
        }
        self._adaptive: dict[str, Placed] = factory.adaptive
        self.reused = tuple(factory.reused)
        """Names of the adaptive samplers taken over from `previous`."""
        self._named_targets = len(self._samplers) > 1
        fields: set[str] = set()
        for sampler in self._samplers.values():
            fields |= sampler.fields_used()
        if self._named_targets:
            fields.update(ENVIRONMENT_FIELDS)
            fields.add(SERVICE_FIELD)
        self._fields = frozenset(fields)
        self._spec = spec
        self._nodes = self._workers = 1
        if previous is not None:
            self.set_cluster_size(previous._nodes, previous._workers)
        else:
            self.set_cluster_size(1)

    @property
    def targets(self) -> frozenset[str]:
        return frozenset(self._samplers)

    def sampler_for(self, target: str) -> Sampler:
        """The target's sampler (the default one for an unknown target)."""
        sampler = self._samplers.get(target)
        return self._samplers[DEFAULT_TARGET] if sampler is None else sampler

    def target_of(self, trace: TraceView) -> str:
        """The target whose sampler decides this trace, read from its root (else first) span."""
        if not self._named_targets:
            return DEFAULT_TARGET
        span = trace.root
        if span is None:
            spans = trace.spans
            if not spans:
                return DEFAULT_TARGET
            span = spans[0]
        environment = span.get(ENVIRONMENT_FIELDS[0])
        if environment is None:
            environment = span.get(ENVIRONMENT_FIELDS[1])
        if type(environment) is str and environment in self._samplers:
            return environment
        service = span.get(SERVICE_FIELD)
        if type(service) is str and service in self._samplers:
            return service
        return DEFAULT_TARGET

    def decide(self, trace: TraceView, now: float) -> Decision:
        return self._samplers[self.target_of(trace)].decide(trace, now)

    def redecide(self, late: TraceView, decision: Decision, now: float) -> Decision | None:
        """What the trace `decision` was made for would have had with `late` (spans that arrived
        after it) in time, where the rules make that certain (see RulesBasedSampler.redecide);
        else None. The target is read from the late spans, like a trace's from its own."""
        sampler = self.sampler_for(self.target_of(late))
        if isinstance(sampler, RulesBasedSampler):
            return sampler.redecide(late, decision, now)
        return None

    def fields_used(self) -> frozenset[str]:
        """Every span field name the rules read, target selection included (no `root.` prefix)."""
        return self._fields

    def fallback_rate(self) -> int:
        """The rate the default target applies to ordinary traffic: what stress relief samples
        at unless told otherwise."""
        return fallback_rate(self._spec.samplers[DEFAULT_TARGET])

    # ---- adaptive samplers ------------------------------------------------------------------

    def count_late(self, decision: Decision, span_count: int, now: float) -> None:
        """Spans of an already decided trace arrived: count them toward the deciding sampler's
        goal. `decision` is the trace's cached decision. Decisions of fixed-rate rules and of
        samplers no longer in the rules are ignored; a sampler rebuilt under the same name by a
        reload counts them as its own."""
        if not decision.sampler:
            return
        placed = self._adaptive.get(decision.sampler)
        if placed is not None:
            placed.sampler.count_late(decision.key, span_count, decision.keep, now)

    def set_cluster_size(self, nodes: int, workers: int = 1) -> None:
        """How many nodes share the goals of `UseClusterSize` samplers (default 1), and how many
        worker processes share this node's throughput goals (always); takes effect at each
        sampler's next recomputation."""
        self._nodes = max(1, nodes)
        self._workers = max(1, workers)
        for placed in self._adaptive.values():
            if isinstance(placed.sampler, ClusterAware):
                placed.sampler.set_cluster_size(self._nodes, self._workers)

    def adaptive_sampler(self, name: str) -> KeyedSampler | None:
        """The adaptive sampler with this name (as in `Decision.sampler`), if there is one."""
        placed = self._adaptive.get(name)
        return None if placed is None else placed.sampler

    def stats(self) -> list[SamplerStats]:
        """One entry per adaptive sampler, in rules-file order."""
        return [placed.sampler.stats() for placed in self._adaptive.values()]

    def take_goal_reports(self) -> list[GoalStatus]:
        """The unreachable-goal statuses of windows ended since the last call: log each once."""
        reports: list[GoalStatus] = []
        for placed in self._adaptive.values():
            reports.extend(placed.sampler.take_goal_reports())
        return reports


RELIEF_DEFAULT_RATE = 100
"""Refinery's StressSamplingRate default, for samplers that have no rate of their own."""


def fallback_rate(spec: SamplerSpec) -> int:
    """A sampler's rate for traffic no special rule picks out: a fixed or goal rate, the last
    condition-less rule's, an initial rate; else RELIEF_DEFAULT_RATE."""
    if isinstance(spec, DeterministicSpec | DynamicSpec):
        return max(1, spec.sample_rate)
    if isinstance(spec, EMADynamicSpec):
        return max(1, spec.goal_sample_rate)
    if isinstance(spec, EMAThroughputSpec) and spec.initial_sample_rate > 0:
        return spec.initial_sample_rate
    if isinstance(spec, RulesBasedSpec):
        for rule in reversed(spec.rules):
            if rule.conditions:
                continue
            if rule.sampler is not None:
                return fallback_rate(rule.sampler)
            return max(1, rule.sample_rate)
    return RELIEF_DEFAULT_RATE
