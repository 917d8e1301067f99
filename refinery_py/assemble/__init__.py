"""Trace assembly: buffer spans by trace ID until the trace is complete, remember decisions.

Pure and synchronous: time arrives as the `now` argument.
"""

from refinery_py.assemble.buffer import Arrivals, BufferedTrace, TraceBuffer
from refinery_py.assemble.decision_cache import CachedDecision, DecisionCache

__all__ = ["Arrivals", "BufferedTrace", "CachedDecision", "DecisionCache", "TraceBuffer"]
