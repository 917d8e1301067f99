"""Every metric refinery_py defines, on an injected prometheus registry.

All names start with `refinery_`. Components receive the one `Metrics` object and touch only the
attributes they own; tests build their own registry and read the values back.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from refinery_py import __version__
from refinery_py.model import SendReason

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 3, 5, 10, 30, 60, 120)
_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10)


class Metrics:
    """The metric families, grouped by the stage that updates them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        Info("refinery_build", "Version of the running refinery_py.", registry=r).info(
            {"version": __version__}
        )

        # receive
        self.spans_received = Counter(
            "refinery_spans_received",
            "Spans accepted into the pipeline, by receiving protocol.",
            ["protocol"],
            registry=r,
        )
        self.spans_rejected = Counter(
            "refinery_spans_rejected",
            "Spans refused at the door (the client was told), by reason.",
            ["reason"],
            registry=r,
        )
        self.requests_rejected = Counter(
            "refinery_requests_rejected",
            "Whole OTLP requests refused, by protocol and reason.",
            ["protocol", "reason"],
            registry=r,
        )
        self.request_bytes = Counter(
            "refinery_received_bytes",
            "Bytes of OTLP request bodies received (after decompression), by protocol.",
            ["protocol"],
            registry=r,
        )

        # assemble
        self.spans_waiting = Gauge(
            "refinery_spans_waiting",
            "Spans buffered, waiting for their trace's decision.",
            registry=r,
        )
        self.traces_waiting = Gauge(
            "refinery_traces_waiting", "Traces buffered, waiting for a decision.", registry=r
        )
        self.buffer_bytes = Gauge(
            "refinery_buffer_bytes",
            "Estimated memory held by buffered spans (wire bytes plus bookkeeping).",
            registry=r,
        )
        self.buffer_budget_bytes = Gauge(
            "refinery_buffer_budget_bytes",
            "The memory budget for buffered spans (traces.max_memory, this process's share): "
            "above it the largest traces are decided early (trace_send_ejected_memsize).",
            registry=r,
        )
        self.late_spans = Counter(
            "refinery_late_spans",
            "Spans that arrived after their trace was decided, by what happened to them: kept "
            "or dropped with their trace, or rescued (their trace was dropped, and they met an "
            "earlier rule that keeps it).",
            ["decision"],
            registry=r,
        )
        self.decision_cache_entries = Gauge(
            "refinery_decision_cache_entries",
            "Decisions remembered for late spans.",
            registry=r,
        )
        self.decision_cache_evictions = Counter(
            "refinery_decision_cache_evictions",
            "Decisions forgotten before their time because the cache hit its memory bound.",
            registry=r,
        )

        # decide
        # Counted once per trace, from the event loop: no lock (see LooseCounter).
        self.traces_decided = LooseCounter(
            "refinery_traces_decided",
            "Traces decided, by decision (kept/dropped) and send reason.",
            ("decision", "send_reason"),
            r,
        )
        self.traces_decided_by_reason = LooseCounter(
            "refinery_traces_decided_by_reason",
            "Traces decided, by decision (kept/dropped) and reason: the rule or sampler that "
            "decided, as in meta.refinery.reason (bounded by the rules file).",
            ("decision", "reason"),
            r,
        )
        self.spans_decided = LooseCounter(
            "refinery_spans_decided",
            "Spans in decided traces, by decision (kept/dropped).",
            ("decision",),
            r,
        )
        self.decision_lag = Gauge(
            "refinery_decision_lag_seconds",
            "How late the last decision tick ran: above 1 s, new requests are refused (429).",
            registry=r,
        )
        self.decision_tick_lag = Histogram(
            "refinery_decision_tick_lag_seconds",
            "How late each decision tick ran. Unlike the gauge, which the next tick overwrites "
            "20 times a second, every tick over the 1 s limit is counted here.",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.decision_hold = Gauge(
            "refinery_decision_hold_seconds",
            "How far past their deadlines decisions now wait for spans this node refused "
            "(senders retry them after the retry hint); 0 when none may still come back.",
            registry=r,
        )
        self.decision_failures = Counter(
            "refinery_decision_failures",
            "Unexpected errors while deciding or exporting a trace, or in the rest of a decision "
            "tick (logged with a traceback): a bug costs the trace it hit, never the ticker.",
            registry=r,
        )
        self.decision_failed_spans = Counter(
            "refinery_decision_failed_spans",
            "Spans of traces lost to an unexpected error while being decided or exported.",
            registry=r,
        )
        self.decision_delay = LooseHistogram(
            "refinery_trace_decision_delay_seconds",
            "Time from a trace's root span arriving to its decision.",
            _LATENCY_BUCKETS,
            r,
        )

        # stress relief
        self.stress_relief_active = Gauge(
            "refinery_stress_relief_active",
            "1 while the node decides new traces on arrival because it could not keep up.",
            registry=r,
        )
        self.stress_relief_activations = Counter(
            "refinery_stress_relief_activations",
            "Times stress relief started.",
            registry=r,
        )
        self.stress_relief_spans = Counter(
            "refinery_stress_relief_spans",
            "Spans of traces decided on arrival by stress relief, by decision (kept, dropped).",
            ["decision"],
            registry=r,
        )

        # export
        self.export_spans = Counter(
            "refinery_export_spans",
            "Spans handed to an exporter, by exporter and outcome (sent, dropped_*, rejected).",
            ["exporter", "outcome"],
            registry=r,
        )
        self.export_requests = Counter(
            "refinery_export_requests",
            "Export requests to a backend, by exporter and outcome.",
            ["exporter", "outcome"],
            registry=r,
        )
        self.export_retries = Counter(
            "refinery_export_retries",
            "Export attempts retried after a retryable failure, by exporter.",
            ["exporter"],
            registry=r,
        )
        self.export_queue_spans = Gauge(
            "refinery_export_queue_spans",
            "Spans waiting in an exporter's queue or being sent.",
            ["exporter"],
            registry=r,
        )
        self.export_queue_bytes = Gauge(
            "refinery_export_queue_bytes",
            "Encoded bytes waiting in an exporter's queue or being sent.",
            ["exporter"],
            registry=r,
        )
        self.export_latency = Histogram(
            "refinery_export_request_seconds",
            "Duration of one export request to a backend, by exporter.",
            ["exporter"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

        # store (its queue and per-span outcomes are in the export_* families, exporter="store")
        self.store_writes = Counter(
            "refinery_store_writes",
            "Kept traces written to the embedded store, by kind (insert: a new trace; append: "
            "spans merged into a stored trace).",
            ["kind"],
            registry=r,
        )
        self.store_write_errors = Counter(
            "refinery_store_write_errors",
            "Store transactions that failed (a failed batch is retried one trace at a time).",
            registry=r,
        )
        self.store_dropped = Counter(
            "refinery_store_dropped_traces",
            "Kept traces the store did not write, by reason (queue_full, shutdown, write_error, "
            "invalid).",
            ["reason"],
            registry=r,
        )
        self.store_rows = Gauge(
            "refinery_store_rows",
            "Traces in the embedded store file (the node's first worker reports the shared file; "
            "the others report 0, so sums across workers are right).",
            registry=r,
        )
        self.store_bytes = Gauge(
            "refinery_store_bytes",
            "Bytes of the store file holding data (free pages and the WAL not included; the "
            "first worker reports it, the others 0).",
            registry=r,
        )
        self.store_retention_deletions = Counter(
            "refinery_store_retention_deletions",
            "Traces deleted from the store by retention, by reason (age, size).",
            ["reason"],
            registry=r,
        )
        self.store_batch_seconds = Histogram(
            "refinery_store_write_batch_seconds",
            "Time to write one batch of traces to the store (one transaction).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

        # recording of incoming traffic
        self.record_spans = Counter(
            "refinery_record_spans",
            "Accepted spans offered to the traffic recorder, by outcome (written, dropped_queue_"
            "full, dropped_write_error, dropped_shutdown).",
            ["outcome"],
            registry=r,
        )
        self.record_bytes = Counter(
            "refinery_record_bytes", "Bytes of OTLP JSON written by the recorder.", registry=r
        )

        # cluster: spans forwarded between members (or a node's worker processes) to their owner
        self.cluster_spans = Counter(
            "refinery_cluster_spans",
            "Spans forwarded to the member that owns their trace (sent) or from another member "
            "(received).",
            ["direction"],
            registry=r,
        )
        self.forward_spans = Counter(
            "refinery_cluster_forward_spans",
            "Spans queued for another member, by how they ended: delivered, rejected (the peer "
            "refused the body), dropped_shutdown (still queued when shutdown ran out of time).",
            ["outcome"],
            registry=r,
        )
        self.forward_rerouted_spans = Counter(
            "refinery_cluster_rerouted_spans",
            "Queued spans sent to a different member after the owners changed (not an outcome: "
            "they end in another member's queue).",
            registry=r,
        )
        self.forward_queue_spans = Gauge(
            "refinery_cluster_forward_queue_spans",
            "Spans waiting to be forwarded to other members.",
            registry=r,
        )
        self.forward_queue_bytes = Gauge(
            "refinery_cluster_forward_queue_bytes",
            "Bytes of spans waiting to be forwarded to other members.",
            registry=r,
        )
        self.sibling_bodies = Counter(
            "refinery_cluster_sibling_bodies",
            "Requests to the node's other worker processes, by how their body went: file (left "
            "in shared memory for the worker to read) or socket (/dev/shm missing or full).",
            ["via"],
            registry=r,
        )
        self.relayed_spans = Counter(
            "refinery_cluster_relayed_spans",
            "Spans that reached a member that does not own them and were passed on to the owner.",
            registry=r,
        )
        self.misplaced_spans = Counter(
            "refinery_cluster_misplaced_spans",
            "Spans kept by a member that does not own them because members disagreed on the "
            "owners (handed on once they agree).",
            registry=r,
        )
        self.handoff_traces = Counter(
            "refinery_cluster_handoff_traces",
            "Undecided traces handed to their new owner after the owners changed (out) or taken "
            "from their previous owner (in).",
            ["direction"],
            registry=r,
        )
        self.handoff_spans = Counter(
            "refinery_cluster_handoff_spans",
            "Spans of the handed-off traces, by direction (out, in).",
            ["direction"],
            registry=r,
        )
        self.handoff_decisions = Counter(
            "refinery_cluster_handoff_decisions",
            "Remembered decisions handed to a trace's new owner (out) or taken from its previous "
            "owner (in), so late spans still follow them.",
            ["direction"],
            registry=r,
        )
        self.credentials = CredentialMetrics(r)

        # rules
        self.rules_reloads = Counter(
            "refinery_rules_reload",
            "Attempts to load a changed rules file, by outcome (applied/rejected/unchanged).",
            ["outcome"],
            registry=r,
        )

        self._born_at_zero()

    def _born_at_zero(self) -> None:
        """Create the series of every label value known in advance, at 0.

        A series that first appears with its first event already counted gives rate() and
        increase() nothing for that event, so a rare one (an ejection, a late span, a rejected
        reload) would never show on a dashboard or trip an alert.
        """
        self.late_spans.labels("rescued")
        for decision in ("kept", "dropped"):
            self.spans_decided.labels(decision)
            self.late_spans.labels(decision)
            self.stress_relief_spans.labels(decision)
            for reason in SendReason:
                if reason is not SendReason.LATE_SPAN:  # late spans are not decisions
                    self.traces_decided.labels(decision, reason.value)
        for outcome in ("applied", "rejected", "unchanged"):
            self.rules_reloads.labels(outcome)


class MembershipMetrics:
    """The cluster view's metrics: kept by whoever runs the membership (the node, or the
    supervisor of its workers)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.members = Gauge(
            "refinery_cluster_members",
            "Nodes in this node's current view of the cluster (itself included while it is a "
            "member).",
            registry=registry,
        )
        self.changes = Counter(
            "refinery_cluster_membership_changes",
            "Times this node's view of the cluster changed.",
            registry=registry,
        )


class CredentialMetrics:
    """Reloads of certificate, key, CA and token files that changed on disk."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reloads = Counter(
            "refinery_credential_reloads",
            "Changed certificate, key, CA or token files read again, by kind (server_tls, "
            "peer_tls, export_tls, tokens) and outcome (applied; failed: the ones in use stay).",
            ["kind", "outcome"],
            registry=registry,
        )

    def outcome(self, kind: str) -> Callable[[bool], None]:
        """A reload callback counting under `kind`."""
        applied = self.reloads.labels(kind, "applied")
        failed = self.reloads.labels(kind, "failed")

        def count(taken: bool) -> None:
            (applied if taken else failed).inc()

        return count


# Metrics moved once per decided trace. prometheus_client's take a lock on every update and, for
# a histogram, walk its bounds in Python: three counters and a histogram cost 2.5 µs a trace,
# about 2% of all a worker does per span. These are updated without a lock, which is as safe as
# long as one thread updates them and the exposition runs on that thread too: each node's
# metrics are served from its event loop, which also decides.


class LooseCounterChild:
    """One labelled series of a LooseCounter."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class LooseCounter(Collector):
    """A labelled counter without a lock (see above); `labels(...)` as prometheus_client's."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self._children: dict[tuple[str, ...], LooseCounterChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> LooseCounterChild:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} has labels {self.labelnames}, got {values}")
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = LooseCounterChild()
        return child

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value)
        yield family


class LooseHistogram(Collector):
    """A histogram without labels and without a lock (see above)."""

    def __init__(
        self, name: str, documentation: str, bounds: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = [float(bound) for bound in bounds]
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation)
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            cumulative += count
            # prometheus_client writes `le` with this (untyped) helper: the same labels as its own
            label = floatToGoString(bound)  # type: ignore[no-untyped-call]
            buckets.append((label, cumulative))
        family.add_metric([], buckets, self.sum)
        yield family
