"""The node's metrics across worker restarts: counters that never go backwards, and what died.

A worker's counters live in its process; when it dies and is restarted, the new one counts from
zero, and a node's totals would drop. The supervisor therefore scrapes every worker every couple
of seconds and keeps the last scrape; when a worker dies, the counters of that scrape (counters,
histograms and summaries: everything cumulative) are carried over and added to what the
restarted worker reports, so totals stay monotonic (what the dead worker counted after its last
scrape, a second or two, is lost to the metrics). The same scrape says what the worker held when
it died: spans buffered, spans waiting for export or to be forwarded. Those are estimated lost,
counted in `refinery_worker_lost_spans_total{where}` and logged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

CUMULATIVE = frozenset({"counter", "histogram", "summary"})

HELD = {
    "buffered": ("refinery_spans_waiting", {}),
    "export_queue": ("refinery_export_queue_spans", {"exporter": "otlp"}),
    "store_queue": ("refinery_export_queue_spans", {"exporter": "store"}),
    "forward_queue": ("refinery_cluster_forward_queue_spans", {}),
}
"""Where a worker holds spans that die with it, as (gauge, labels) in its metrics."""

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class _Worker:
    last: list[Metric] = field(default_factory=list)
    shape: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(name, documentation, type, unit) of the cumulative families last seen: what to report
    the carried counters under while the worker is down."""
    seen_at: float = 0.0
    carried: dict[SampleKey, float] = field(default_factory=dict)
    """Cumulative samples of this worker's earlier lives, to add to the current one's."""
    life: int = 0
    """Which life of the worker this is (a death starts the next)."""


@dataclass(frozen=True)
class Loss:
    """What a dead worker held at its last scrape."""

    spans: dict[str, float]
    traces: float
    age: float
    """Seconds between that scrape and the death."""

    @property
    def total(self) -> float:
        return sum(self.spans.values())


class WorkerMetrics:
    """Last scrapes and carried-over counters of a node's workers."""

    def __init__(self, workers: int) -> None:
        self._workers = [_Worker() for _ in range(workers)]

    def life(self, index: int) -> int:
        """Worker `index`'s life now: pass it to `seen` with a scrape started now."""
        return self._workers[index].life

    def seen(self, index: int, text: str, life: int) -> list[Metric]:
        """A scrape of worker `index` started during `life`: remembered, and returned with
        earlier lives' counters added. A scrape that started before a death (it answered just
        before dying) is not taken for the next life's."""
        worker = self._workers[index]
        if life != worker.life:
            text = ""
        families = list(text_string_to_metric_families(text)) if text else []
        if families:
            worker.last, worker.seen_at = families, time.monotonic()
            worker.shape = [
                (f.name, f.documentation, f.type, f.unit) for f in families if f.type in CUMULATIVE
            ]
        elif worker.carried:
            # Down (being restarted): its earlier lives' counters still count.
            families = [Metric(*shape) for shape in worker.shape]
        # Copies: the caller relabels and merges what it gets; what is kept must not change.
        copies = [_copy(family) for family in families]
        return list(self._with_carried(worker, copies))

    def died(self, index: int) -> Loss:
        """Worker `index` is gone: carry its counters over, and say what it held."""
        worker = self._workers[index]
        held = dict.fromkeys(HELD, 0.0)
        traces = 0.0
        for family in worker.last:
            for sample in family.samples:
                if family.type in CUMULATIVE:
                    key = _key(sample)
                    worker.carried[key] = worker.carried.get(key, 0.0) + sample.value
                    continue
                if sample.name == "refinery_traces_waiting":
                    traces += sample.value
                for where, (name, labels) in HELD.items():
                    if sample.name == name and all(
                        sample.labels.get(k) == v for k, v in labels.items()
                    ):
                        held[where] += sample.value
        age = time.monotonic() - worker.seen_at if worker.seen_at else 0.0
        worker.last, worker.seen_at = [], 0.0
        worker.life += 1
        return Loss(held, traces, age)

    def _with_carried(self, worker: _Worker, families: Iterable[Metric]) -> Iterable[Metric]:
        if not worker.carried:
            yield from families
            return
        pending = dict(worker.carried)
        for family in families:
            if family.type in CUMULATIVE:
                family.samples = [
                    Sample(
                        s.name,
                        s.labels,
                        s.value + pending.pop(_key(s), 0.0),
                        s.timestamp,
                        s.exemplar,
                    )
                    for s in family.samples
                ]
                # Series the earlier life had and this one has not created yet (a labelled child
                # appears on its first use) still count.
                names = _sample_names(family)
                for key in [k for k in pending if k[0] in names]:
                    family.samples.append(Sample(key[0], dict(key[1]), pending.pop(key)))
            yield family


def _copy(family: Metric) -> Metric:
    copy = Metric(family.name, family.documentation, family.type, family.unit)
    copy.samples = list(family.samples)
    return copy


def _sample_names(family: Metric) -> frozenset[str]:
    if family.type == "counter":
        return frozenset({family.name + "_total"})
    if family.type == "histogram":
        return frozenset({family.name + "_bucket", family.name + "_count", family.name + "_sum"})
    return frozenset({family.name, family.name + "_count", family.name + "_sum"})


def _key(sample: Sample) -> SampleKey:
    return sample.name, tuple(sorted(sample.labels.items()))
