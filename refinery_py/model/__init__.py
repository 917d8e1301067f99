"""Plain data and the Protocols at the seams. Standard library only."""

from refinery_py.model.batch import Origin, SpanBatch
from refinery_py.model.decision import Decision, KeptTrace, SendReason
from refinery_py.model.handoff import HandedOffDecision, HandedOffTrace, Handoff
from refinery_py.model.ports import (
    ACCEPTED,
    Admission,
    ClusterSink,
    EncodedSpans,
    ExportBacklog,
    SpanSink,
    TraceExporter,
)
from refinery_py.model.views import FieldValue, SpanView, TraceView

__all__ = [
    "ACCEPTED",
    "Admission",
    "ClusterSink",
    "Decision",
    "EncodedSpans",
    "ExportBacklog",
    "FieldValue",
    "HandedOffDecision",
    "HandedOffTrace",
    "Handoff",
    "KeptTrace",
    "Origin",
    "SendReason",
    "SpanBatch",
    "SpanSink",
    "SpanView",
    "TraceExporter",
    "TraceView",
]
