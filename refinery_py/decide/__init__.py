"""Samplers and the rules engine: `Trace -> Decision(keep, rate, reason, key, sampler)`.

Pure and synchronous: no clock, no randomness, no I/O. Time arrives as `now`; the keep/drop choice
at a given rate is a hash of the trace ID.
"""

from refinery_py.decide.deterministic import DeterministicSampler
from refinery_py.decide.dynamic import DynamicSampler
from refinery_py.decide.ema_dynamic import EMADynamicSampler
from refinery_py.decide.ema_throughput import EMAThroughputSampler
from refinery_py.decide.engine import RulesEngine
from refinery_py.decide.factory import build_sampler
from refinery_py.decide.hashing import keep_for_rate
from refinery_py.decide.keyed import KeyedSampler
from refinery_py.decide.rules import RulesBasedSampler
from refinery_py.decide.sampler import Sampler, UnsupportedSampler
from refinery_py.decide.stats import GoalStatus, KeyRate, SamplerStats
from refinery_py.decide.total_throughput import TotalThroughputSampler
from refinery_py.decide.windowed_throughput import WindowedThroughputSampler

__all__ = [
    "DeterministicSampler",
    "DynamicSampler",
    "EMADynamicSampler",
    "EMAThroughputSampler",
    "GoalStatus",
    "KeyRate",
    "KeyedSampler",
    "RulesBasedSampler",
    "RulesEngine",
    "Sampler",
    "SamplerStats",
    "TotalThroughputSampler",
    "UnsupportedSampler",
    "WindowedThroughputSampler",
    "build_sampler",
    "keep_for_rate",
]
