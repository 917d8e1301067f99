"""Decision cost per trace of each sampler type, in microseconds, on the hot path's views.

    .venv/bin/python -m bench.decide_cost [--traces 20000] [--repeat 5]

Every adaptive sampler keys on `[customer.id, http.route]`, values gathered from every span,
and sees traces of 20-30 spans arriving at 10,000 traces/s on a fake clock; one more row keys on
`[root.customer.id, root.http.route]` as `rules/default.yaml` does, and the last runs the whole
default rules file. Two views of the same kind of traffic:

- dict: each span a plain dict of ~12 fields (what tests use; the sampler's own cost);
- wire: `WireTrace` over span bytes from `bench/traffic.py`, split with `split_request` (what
  the pipeline decides on); a fresh view per decision, as in the pipeline, so every field read
  is paid for.

Also printed: the key alone, the trace-ID hash alone, and what recomputing rates costs per
window for a given number of keys (once per ClearFrequency or AdjustmentInterval, and once per
UpdateFrequency for the windowed sampler; divide by the traces per window for the amortized
cost). Best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import functools
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from bench.traffic import TrafficShape, generate_requests
from refinery_py.config.rules import load_rules
from refinery_py.config.rules_spec import (
    DeterministicSpec,
    DynamicSpec,
    EMADynamicSpec,
    EMAThroughputSpec,
    SamplerSpec,
    TotalThroughputSpec,
    WindowedThroughputSpec,
)
from refinery_py.decide import RulesEngine, build_sampler
from refinery_py.decide.allotment import Demand, allot, sample_rates
from refinery_py.decide.hashing import trace_hash
from refinery_py.decide.trace_key import TraceKey
from refinery_py.model import Decision, SpanView, TraceView
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.otlp.span_view import WireTrace

DEFAULT_RULES = "rules/default.yaml"
KEY = ("customer.id", "http.route")
ROOT_KEY = ("root.customer.id", "root.http.route")
TRACES_PER_SEC = 10_000.0
SPECS: dict[str, SamplerSpec] = {
    "DeterministicSampler (baseline)": DeterministicSpec(sample_rate=10),
    "DynamicSampler": DynamicSpec(sample_rate=10, field_list=KEY, max_keys=10_000),
    "EMADynamicSampler": EMADynamicSpec(goal_sample_rate=10, field_list=KEY, max_keys=10_000),
    "EMAThroughputSampler": EMAThroughputSpec(
        goal_throughput_per_sec=5000, field_list=KEY, max_keys=10_000
    ),
    "WindowedThroughputSampler": WindowedThroughputSpec(
        goal_throughput_per_sec=5000, field_list=KEY, max_keys=10_000
    ),
    "TotalThroughputSampler": TotalThroughputSpec(
        goal_throughput_per_sec=5000, field_list=KEY, max_keys=10_000
    ),
    "EMADynamicSampler, root. key": EMADynamicSpec(
        goal_sample_rate=10, field_list=ROOT_KEY, max_keys=10_000
    ),
}


class Decider(Protocol):
    def decide(self, trace: TraceView, now: float) -> Decision: ...


class DictTrace:
    """A TraceView over plain dicts."""

    __slots__ = ("root", "spans", "trace_id")

    def __init__(self, trace_id: str, spans: Sequence[SpanView]) -> None:
        self.trace_id = trace_id
        self.spans = spans
        self.root = spans[0]

    @property
    def span_count(self) -> int:
        return len(self.spans)

    def spans_with(self, field: str) -> Sequence[SpanView]:
        return self.spans  # dicts rule nothing out cheaply


def dict_traces(count: int, seed: int = 11) -> list[TraceView]:
    rng = random.Random(seed)
    customers = [f"cust-{i:05d}" for i in range(1000)]
    weights = [1 / (rank**1.2) for rank in range(1, 1001)]
    routes = [f"/api/v1/resource{i}/{{id}}" for i in range(50)]
    traces: list[TraceView] = []
    for _ in range(count):
        customer = rng.choices(customers, weights)[0]
        route = rng.choice(routes)
        spans: list[SpanView] = []
        for index in range(rng.randint(20, 30)):
            span: dict[str, str | int | float | bool] = {
                "customer.id": customer,
                "service.name": "web" if index == 0 else "api",
                "name": route if index == 0 else "SELECT orders",
                "duration_ms": rng.random() * 100,
                "status_code": 0,
                "db.system": "postgresql",
                "thread.id": rng.randint(1, 64),
                "app.plan": "team",
                "net.peer.name": "db.internal",
                "span.kind": "server" if index == 0 else "internal",
                "code.lineno": rng.randint(1, 900),
            }
            if index == 0:
                span["http.route"] = route
            spans.append(span)
        traces.append(DictTrace(f"{rng.getrandbits(128):032x}", spans))
    return traces


def wire_traces(count: int) -> list[tuple[bytes, list[bytes], list, int]]:  # type: ignore[type-arg]
    """(trace ID, span bytes, origins, root index) per trace, from the benchmark's traffic."""
    interner = OriginInterner()
    grouped: dict[bytes, tuple[list[bytes], list, list[int]]] = {}  # type: ignore[type-arg]
    for body in generate_requests(count, TrafficShape(seed=7, health_fraction=0.0)):
        batch = split_request(body, interner)
        for index, trace_id in enumerate(batch.trace_ids):
            spans, origins, root = grouped.setdefault(trace_id, ([], [], [-1]))
            if index in batch.root_positions:
                root[0] = len(spans)
            spans.append(batch.spans[index])
            origins.append(batch.origins[index])
    return [(tid, spans, origins, root[0]) for tid, (spans, origins, root) in grouped.items()]


def best(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


def per_trace(count: int, body: Callable[[], object]) -> float:
    started = time.perf_counter()
    body()
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    dicts = dict_traces(args.traces)
    wires = wire_traces(min(args.traces, 5_000))
    spans_dict = sum(len(t.spans) for t in dicts) / len(dicts)
    spans_wire = sum(len(t[1]) for t in wires) / len(wires)
    print(
        f"{len(dicts)} dict traces ({spans_dict:.1f} spans each), {len(wires)} wire traces "
        f"({spans_wire:.1f} spans each), key {list(KEY)}, {TRACES_PER_SEC:.0f} traces/s\n"
    )
    print(f"{'sampler':38s} {'dict µs/trace':>14s} {'wire µs/trace':>14s}")

    def run_dict(make: Callable[[], Decider]) -> float:
        decide = make().decide

        def body() -> None:
            for index, trace in enumerate(dicts):
                decide(trace, 1000.0 + index / TRACES_PER_SEC)

        return per_trace(len(dicts), body)

    def run_wire(make: Callable[[], Decider]) -> float:
        decide = make().decide

        def body() -> None:
            for index, (trace_id, spans, origins, root) in enumerate(wires):
                decide(WireTrace(trace_id, spans, origins, root), 1000.0 + index / TRACES_PER_SEC)

        return per_trace(len(wires), body)

    makers: dict[str, Callable[[], Decider]] = {
        name: functools.partial(build_sampler, spec, "bench") for name, spec in SPECS.items()
    }
    rules = load_rules(DEFAULT_RULES)
    makers[f"RulesEngine({DEFAULT_RULES})"] = functools.partial(RulesEngine, rules)
    for name, make in makers.items():
        dict_cost = best(args.repeat, functools.partial(run_dict, make))
        wire_cost = best(args.repeat, functools.partial(run_wire, make))
        print(f"{name:38s} {dict_cost:14.2f} {wire_cost:14.2f}")

    key = TraceKey(KEY, False)
    key_dict = best(args.repeat, lambda: per_trace(len(dicts), lambda: [*map(key.build, dicts)]))

    def build_wire_keys() -> None:
        for trace_id, spans, origins, root in wires:
            key.build(WireTrace(trace_id, spans, origins, root))

    key_wire = best(args.repeat, lambda: per_trace(len(wires), build_wire_keys))
    hashing = best(
        args.repeat,
        lambda: per_trace(len(dicts), lambda: [trace_hash(t.trace_id) for t in dicts]),
    )
    print(f"{'  the all-span key alone':38s} {key_dict:14.2f} {key_wire:14.2f}")
    print(f"{'  the trace-ID hash alone':38s} {hashing:14.2f} {hashing:14.2f}")

    print(f"\n{'rates recomputed per window':38s} {'ms/window':>14s}")
    rng = random.Random(3)
    for keys in (500, 5_000, 10_000):
        traces = [rng.paretovariate(1.2) for _ in range(keys)]
        demands = {f"k{i}": Demand(20 * count, count) for i, count in enumerate(traces)}
        budget = sum(d.spans for d in demands.values()) / 10

        def plan(demands: dict[str, Demand] = demands, budget: float = budget) -> float:
            started = time.perf_counter()
            sample_rates(demands, allot(demands, budget, log_weights=True))
            return (time.perf_counter() - started) * 1e3

        print(f"{f'  {keys} keys':38s} {best(args.repeat, plan):14.2f}")


if __name__ == "__main__":
    main()
