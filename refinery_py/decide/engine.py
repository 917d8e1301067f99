"""The rules file as a whole: one sampler per target, and which target a trace belongs to.

Refinery picks the target from the API key's environment; refinery_py reads it from the trace
(design.md): `deployment.environment.name` (or the older `deployment.environment`) when a sampler
is configured under that name, else `service.name` when one is, else `__default__`.
"""

from __future__ import annotations

from refinery_py.config.rules_spec import (
    DEFAULT_TARGET,
    SAMPLER_TYPES,
    DeterministicSpec,
    DownstreamSpec,
    RulesBasedSpec,
    RulesSpec,
    SamplerSpec,
)
from refinery_py.decide.deterministic import DeterministicSampler
from refinery_py.decide.rules import RulesBasedSampler
from refinery_py.decide.sampler import Sampler, UnsupportedSampler
from refinery_py.model import Decision, TraceView

ENVIRONMENT_FIELDS = ("deployment.environment.name", "deployment.environment")
SERVICE_FIELD = "service.name"

_TYPE_NAMES = {spec_type: name for name, spec_type in SAMPLER_TYPES.items()}


def build_sampler(spec: SamplerSpec, target: str = DEFAULT_TARGET) -> Sampler:
    """The sampler a spec describes; `target` only names it in errors.

    Raises UnsupportedSampler for the sampler types not implemented yet (the dynamic and
    throughput samplers), including when a rule names one as its downstream `Sampler`.
    """
    if isinstance(spec, DeterministicSpec):
        return DeterministicSampler(spec)
    if isinstance(spec, RulesBasedSpec):

        def build_downstream(downstream: DownstreamSpec) -> Sampler:
            return build_sampler(downstream, target)

        return RulesBasedSampler(spec, build_downstream)
    name = _TYPE_NAMES.get(type(spec), type(spec).__name__)
    where = f"target {target!r}, line {spec.line}" if spec.line else f"target {target!r}"
    raise UnsupportedSampler(f"{name} ({where}) is not supported yet")


class RulesEngine:
    """Every target's sampler, built once from a RulesSpec; decides traces by their target."""

    __slots__ = ("_fields", "_named_targets", "_samplers")

    def __init__(self, spec: RulesSpec) -> None:
        if DEFAULT_TARGET not in spec.samplers:
            raise ValueError(f"rules have no {DEFAULT_TARGET} sampler")
        self._samplers = {
            target: build_sampler(sampler_spec, target)
            for target, sampler_spec in spec.samplers.items()
        }
        self._named_targets = len(self._samplers) > 1
        fields: set[str] = set()
        for sampler in self._samplers.values():
            fields |= sampler.fields_used()
        if self._named_targets:
            fields.update(ENVIRONMENT_FIELDS)
            fields.add(SERVICE_FIELD)
        self._fields = frozenset(fields)

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

    def fields_used(self) -> frozenset[str]:
        """Every span field name the rules read, target selection included (no `root.` prefix)."""
        return self._fields
