"""Plain data and the Protocols at the seams. Standard library only."""

from refinery_py.model.batch import Origin, SpanBatch
from refinery_py.model.decision import Decision, KeptTrace, SendReason
from refinery_py.model.ports import (
    ACCEPTED,
    Admission,
    EncodedSpans,
    ForwardedSpans,
    PeerSink,
    SpanSink,
    TraceExporter,
)
from refinery_py.model.views import FieldValue, SpanView, TraceView

__all__ = [
    "ACCEPTED",
    "Admission",
    "Decision",
    "EncodedSpans",
    "FieldValue",
    "ForwardedSpans",
    "KeptTrace",
    "Origin",
    "PeerSink",
    "SendReason",
    "SpanBatch",
    "SpanSink",
    "SpanView",
    "TraceExporter",
    "TraceView",
]
