"""Build samplers from specs, reusing the live adaptive samplers a reload did not change.

Every adaptive sampler has a place: its target, and for a rule's downstream `Sampler:` the rule
(by `Name`, or `<Name>#<index>` when the name is empty or shared). The place and the type make its
name, `<target>:<type>` or `<target>/<rule>:<type>`, which is also the `sampler` label of its
metrics and the `Decision.sampler` of its decisions.

On a reload the factory is given the previous engine's samplers by name. A sampler whose spec
is equal at the same place, ignoring the line it sits on (an edit elsewhere in the file moves
lines), is taken over with everything it learned; any other gets a fresh sampler. Refinery
instead rebuilds every sampler on any reload and starts learning from scratch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from refinery_py.config.rules_spec import (
    DEFAULT_TARGET,
    DeterministicSpec,
    DownstreamSpec,
    DynamicSpec,
    EMADynamicSpec,
    EMAThroughputSpec,
    RulesBasedSpec,
    SamplerSpec,
    TotalThroughputSpec,
    WindowedThroughputSpec,
)
from refinery_py.decide.deterministic import DeterministicSampler
from refinery_py.decide.dynamic import DynamicSampler
from refinery_py.decide.ema_dynamic import EMADynamicSampler
from refinery_py.decide.ema_throughput import EMAThroughputSampler
from refinery_py.decide.keyed import KeyedSampler
from refinery_py.decide.rules import RulesBasedSampler
from refinery_py.decide.sampler import Sampler, UnsupportedSampler
from refinery_py.decide.total_throughput import TotalThroughputSampler
from refinery_py.decide.windowed_throughput import WindowedThroughputSampler

AdaptiveSpec = (
    DynamicSpec | EMADynamicSpec | EMAThroughputSpec | WindowedThroughputSpec | TotalThroughputSpec
)


@dataclasses.dataclass(frozen=True, slots=True)
class Placed:
    """An adaptive sampler and the spec it was built from (its line cleared)."""

    spec: AdaptiveSpec
    sampler: KeyedSampler


_KINDS: dict[type, str] = {
    DynamicSpec: DynamicSampler.kind,
    EMADynamicSpec: EMADynamicSampler.kind,
    EMAThroughputSpec: EMAThroughputSampler.kind,
    WindowedThroughputSpec: WindowedThroughputSampler.kind,
    TotalThroughputSpec: TotalThroughputSampler.kind,
}


def _unplaced(spec: AdaptiveSpec) -> AdaptiveSpec:
    return dataclasses.replace(spec, line=0)


def _new_adaptive(spec: AdaptiveSpec, name: str) -> KeyedSampler:
    if isinstance(spec, DynamicSpec):
        return DynamicSampler(spec, name)
    if isinstance(spec, EMADynamicSpec):
        return EMADynamicSampler(spec, name)
    if isinstance(spec, EMAThroughputSpec):
        return EMAThroughputSampler(spec, name)
    if isinstance(spec, WindowedThroughputSpec):
        return WindowedThroughputSampler(spec, name)
    return TotalThroughputSampler(spec, name)


class SamplerFactory:
    """Builds the samplers of one rules file; `adaptive` lists the adaptive ones by name."""

    def __init__(self, previous: Mapping[str, Placed] | None = None) -> None:
        self._previous = dict(previous or {})
        self.adaptive: dict[str, Placed] = {}
        self.reused: list[str] = []
        """Names of the samplers taken over from the previous engine."""

    def build(self, spec: SamplerSpec, target: str = DEFAULT_TARGET) -> Sampler:
        """The sampler for a target's spec (rules build their downstream samplers here too)."""
        if isinstance(spec, DeterministicSpec):
            return DeterministicSampler(spec)
        if isinstance(spec, RulesBasedSpec):

            def build_downstream(downstream: DownstreamSpec, rule: str) -> Sampler:
                return self._build_at(downstream, target, f"{target}/{rule}")

            return RulesBasedSampler(spec, build_downstream)
        return self._build_at(spec, target, target)

    def _build_at(self, spec: DownstreamSpec, target: str, place: str) -> Sampler:
        if isinstance(spec, DeterministicSpec):
            return DeterministicSampler(spec)
        kind = _KINDS.get(type(spec))
        if kind is None:  # a spec type declared in rules_spec without a sampler behind it
            where = f"target {target!r}, line {spec.line}" if spec.line else f"target {target!r}"
            raise UnsupportedSampler(f"{type(spec).__name__} ({where}) is not supported")
        unplaced = _unplaced(spec)
        name = f"{place}:{kind}"
        if name in self.adaptive:  # a target named like another target's rule: keep names unique
            name = f"{name}#{len(self.adaptive)}"
        earlier = self._previous.pop(name, None)
        if earlier is not None and earlier.spec == unplaced:
            sampler = earlier.sampler
            self.reused.append(name)
        else:
            sampler = _new_adaptive(spec, name)
        self.adaptive[name] = Placed(unplaced, sampler)
        return sampler


def build_sampler(spec: SamplerSpec, target: str = DEFAULT_TARGET) -> Sampler:
    """A fresh sampler for a spec; `target` names it (and its adaptive parts)."""
    return SamplerFactory().build(spec, target)
