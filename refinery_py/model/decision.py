"""What a sampler concludes about a trace, and why the trace was decided when it was."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SendReason(enum.StrEnum):
    """Why a trace was decided at the moment it was (`meta.refinery.send_reason`)."""

    GOT_ROOT = "trace_send_got_root"
    EXPIRED = "trace_send_expired"
    SPAN_LIMIT = "trace_send_span_limit"
    EJECTED_MEMSIZE = "trace_send_ejected_memsize"
    LATE_SPAN = "trace_send_late_span"
    SHUTDOWN = "trace_send_shutdown"
    STRESS_RELIEF = "trace_send_stress_relief"


@dataclass(frozen=True, slots=True)
class Decision:
    """A sampler's verdict on one trace.

    `rate` is the sample rate the decision applied (also when the trace is dropped), `reason`
    names the rule or sampler (`rules/trace/keep errors`, `deterministic/chance`), and `key` is the
    dynamic sampler's key, empty when the sampler has none. `sampler` names the adaptive sampler
    that decided (`<target>:<type>` or `<target>/<rule>:<type>`), empty for fixed-rate decisions;
    with `key` it lets spans that arrive after the decision be counted by that sampler.
    """

    keep: bool
    rate: int
    reason: str
    key: str = ""
    sampler: str = ""


@dataclass(frozen=True, slots=True)
class KeptTrace:
    """A kept trace (or late spans of one), encoded once and handed to every exporter.

    `payload` is a serialized `ExportTraceServiceRequest` holding only this trace's spans, already
    annotated with the output attributes; concatenating payloads yields a valid request, which is
    how exporters batch without re-encoding.
    """

    trace_id: bytes
    payload: bytes
    span_count: int
    decision: Decision
    send_reason: SendReason
    customer: str
