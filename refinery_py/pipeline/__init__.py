"""The async driver: the one place that reads the clock and moves traces through the stages.

Receivers call `Pipeline.accept` synchronously on the event loop; a batch is buffered (or
refused) before the request is answered. A ticker decides the traces that are due, encodes the
kept ones once and offers them to every exporter. Everything runs on one event loop thread, so
the buffer, the decision cache and the samplers need no locks; each worker process has its own
pipeline.

- `core`: intake, decisions, export, the ticker and shutdown;
- `admission`: when to refuse a request (decisions behind, export queues that would overflow);
- `hold`: how long decisions wait for the spans of refused requests to come back;
- `membership`: the pipeline's side of a cluster (spans from other members, handoffs, owners
  changing);
- `relief`: stress relief (deciding on arrival under sustained overload).
"""

from refinery_py.pipeline.admission import EXPORT_ROOM
from refinery_py.pipeline.core import DECIDE_ERROR_REASON, Decider, GoalReport, Pipeline
from refinery_py.pipeline.relief import RELIEF_REASON, Relief

__all__ = [
    "DECIDE_ERROR_REASON",
    "EXPORT_ROOM",
    "RELIEF_REASON",
    "Decider",
    "GoalReport",
    "Pipeline",
    "Relief",
]
