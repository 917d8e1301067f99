"""Samplers and the rules engine: `Trace -> Decision(keep, rate, reason, key)`.

Pure and synchronous: no clock, no randomness, no I/O. Time arrives as `now`; the keep/drop choice
at a fixed rate is a hash of the trace ID.
"""

from refinery_py.decide.deterministic import DeterministicSampler
from refinery_py.decide.engine import RulesEngine, build_sampler
from refinery_py.decide.hashing import keep_for_rate
from refinery_py.decide.rules import RulesBasedSampler
from refinery_py.decide.sampler import Sampler, UnsupportedSampler

__all__ = [
    "DeterministicSampler",
    "RulesBasedSampler",
    "RulesEngine",
    "Sampler",
    "UnsupportedSampler",
    "build_sampler",
    "keep_for_rate",
]
