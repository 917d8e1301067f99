"""A reusable traffic simulator for the adaptive samplers' statistical tests: pure and fast.

`generate(shape)` builds a fixed, seeded stream of traces with arrival times on a fake clock:
Zipf-distributed customers and routes, a span count per trace that depends on the route, and
Poisson arrivals. Traces are dict-backed (a plain `dict` is a SpanView: `.get(field)`), and the
span dicts and span tuples are shared between traces of the same customer, route and length, so a
quarter of a million traces take a second to build and little memory.

`generate_tenants(shape)` builds the traffic of issue 10: many customers with a few requests
each, every customer on two of many routes, traces of 1-3 spans, one of a few services each.

`run(sampler, traces, ...)` feeds every trace to a sampler in time order and measures what the
tests assert on: overall and per-window sample rates and throughput after a warm-up, which keys
kept nothing in a floor window, and each customer's share of the kept spans.
`run_with_late_spans` decides each trace on its first spans and delivers the rest later.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from refinery_py.model import Decision, SpanView, TraceView

CUSTOMER = "customer.id"
ROUTE = "http.route"


@dataclass(frozen=True)
class TrafficShape:
    """Knobs of the simulated traffic; the defaults are the tests' main simulation."""

    traces: int = 240_000
    duration: float = 300.0
    """Simulated seconds the traces arrive over (Poisson arrivals at traces / duration per s)."""
    customers: int = 500
    customer_s: float = 1.2
    routes: int = 10
    route_s: float = 1.2
    min_spans: int = 4
    max_spans: int = 40
    seed: int = 1567
    start: float = 1_790_000_000.0


class SimTrace:
    """A TraceView over shared dict spans, with the customer and route it was drawn for."""

    __slots__ = ("customer", "root", "route", "spans", "time", "trace_id")

    def __init__(
        self, trace_id: str, spans: Sequence[SpanView], time: float, customer: int, route: int
    ) -> None:
        self.trace_id = trace_id
        self.spans: Sequence[SpanView] = spans
        self.root: SpanView | None = spans[0]
        self.time = time
        self.customer = customer
        self.route = route

    @property
    def span_count(self) -> int:
        return len(self.spans)

    def spans_with(self, field: str) -> Sequence[SpanView]:
        return self.spans


def zipf_cumulative(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / rank**s for rank in range(1, n + 1)))


def generate(shape: TrafficShape) -> list[SimTrace]:
    """The traces of `shape`, in arrival order."""
    rng = random.Random(shape.seed)
    count = shape.traces
    customers = rng.choices(
        range(shape.customers),
        cum_weights=zipf_cumulative(shape.customers, shape.customer_s),
        k=count,
    )
    routes = rng.choices(
        range(shape.routes), cum_weights=zipf_cumulative(shape.routes, shape.route_s), k=count
    )
    # Each route has its own typical size: a health check is small, a checkout is large.
    spread = shape.max_spans - shape.min_spans
    sizes = []
    for _ in range(shape.routes):
        low = shape.min_spans + rng.randrange(spread // 2 + 1)
        sizes.append((low, low + rng.randrange(spread // 2 + 1)))
    rate = count / shape.duration
    made: dict[tuple[int, int, int], tuple[dict[str, str], ...]] = {}
    traces = []
    now = shape.start
    for customer, route in zip(customers, routes, strict=True):
        now += rng.expovariate(rate)
        low, high = sizes[route]
        length = rng.randint(low, high)
        spans = made.get((customer, route, length))
        if spans is None:
            root = {CUSTOMER: f"c{customer:04d}", ROUTE: f"/r{route:02d}", "service.name": "web"}
            child = {CUSTOMER: f"c{customer:04d}", "service.name": "db"}
            spans = made[customer, route, length] = (root, *([child] * (length - 1)))
        traces.append(SimTrace(f"{rng.getrandbits(128):032x}", spans, now, customer, route))
    return traces


@dataclass(frozen=True)
class TenantShape:
    """Issue 10's traffic: small traces from many customers, so (customer, route) keys outnumber
    a sampler's `MaxKeys` and most of them send one or two traces per window."""

    traces_per_sec: float = 200.0
    duration: float = 1_800.0
    customers: int = 500
    customer_s: float = 1.2
    routes: int = 50
    routes_per_customer: int = 2
    services: int = 8
    """Each route belongs to one service (route number modulo this); every span carries it."""
    min_spans: int = 1
    max_spans: int = 3
    seed: int = 10
    start: float = 1_790_000_000.0


def generate_tenants(shape: TenantShape) -> list[SimTrace]:
    """The traces of `shape`, in arrival order; a trace's customer picks one of its routes."""
    rng = random.Random(shape.seed)
    count = int(shape.traces_per_sec * shape.duration)
    customers = rng.choices(
        range(shape.customers),
        cum_weights=zipf_cumulative(shape.customers, shape.customer_s),
        k=count,
    )
    routes_of = [
        rng.sample(range(shape.routes), shape.routes_per_customer) for _ in range(shape.customers)
    ]
    made: dict[tuple[int, int, int], tuple[dict[str, str], ...]] = {}
    traces = []
    now = shape.start
    for customer in customers:
        now += rng.expovariate(shape.traces_per_sec)
        route = rng.choice(routes_of[customer])
        length = rng.randint(shape.min_spans, shape.max_spans)
        spans = made.get((customer, route, length))
        if spans is None:
            service = f"svc{route % shape.services}"
            root = {CUSTOMER: f"c{customer:04d}", ROUTE: f"/r{route:02d}", "service.name": service}
            child = {CUSTOMER: f"c{customer:04d}", "service.name": service}
            spans = made[customer, route, length] = (root, *([child] * (length - 1)))
        traces.append(SimTrace(f"{rng.getrandbits(128):032x}", spans, now, customer, route))
    return traces


class Decider(Protocol):
    """Anything with `decide(trace, now)`: a sampler or the rules engine."""

    def decide(self, trace: TraceView, now: float) -> Decision: ...


@dataclass
class Outcome:
    """What a run measured after its warm-up (`from_time`)."""

    seen_traces: int = 0
    kept_traces: int = 0
    seen_spans: int = 0
    kept_spans: int = 0
    seconds: float = 0.0
    windows: int = 0
    """Whole floor windows measured."""
    keys_without_keep: int = 0
    """(window, key) pairs where the key had traces in the window but kept none of them."""
    keys_in_windows: int = 0
    customers_without_keep: int = 0
    """(window, customer) pairs where the customer had traces in the window but kept none."""
    customers_in_windows: int = 0
    window_rates: list[float] = field(default_factory=list)
    """Per measured window: seen spans / kept spans."""
    window_throughputs: list[float] = field(default_factory=list)
    """Per measured window: kept spans per second."""
    window_top_shares: list[float] = field(default_factory=list)
    """Per measured window: the largest share of the window's kept spans one customer had."""
    customer_kept: dict[int, int] = field(default_factory=dict)
    customer_seen: dict[int, int] = field(default_factory=dict)

    @property
    def span_rate(self) -> float:
        """The achieved overall sample rate, by spans (the unit of the goals)."""
        return self.seen_spans / self.kept_spans

    @property
    def trace_rate(self) -> float:
        return self.seen_traces / self.kept_traces

    @property
    def kept_spans_per_sec(self) -> float:
        return self.kept_spans / self.seconds

    @property
    def customer_coverage(self) -> float:
        """Share of (window, customer) pairs with traffic in which the customer kept a trace."""
        return 1 - self.customers_without_keep / self.customers_in_windows

    def max_customer_share(self) -> float:
        return max(self.customer_kept.values()) / self.kept_spans


def run(
    sampler: Decider,
    traces: Sequence[SimTrace],
    *,
    window: float,
    warmup_windows: int,
) -> Outcome:
    """Decide every trace; measure whole `window`s (the sampler's floor window) after the first
    `warmup_windows`, which are decided but not measured."""
    start = traces[0].time
    from_time = start + warmup_windows * window
    last_window = int((traces[-1].time - start) // window) - 1  # the final one is partial
    to_time = start + (last_window + 1) * window
    out = Outcome()
    customer_kept: dict[int, int] = defaultdict(int)
    customer_seen: dict[int, int] = defaultdict(int)
    window_keys: dict[str, bool] = {}
    window_covered: dict[int, bool] = {}
    window_customers: dict[int, int] = defaultdict(int)
    window_seen = window_kept = 0
    current = warmup_windows
    decide = sampler.decide

    def close_window() -> None:
        nonlocal window_keys, window_covered, window_customers, window_seen, window_kept
        out.windows += 1
        out.keys_in_windows += len(window_keys)
        out.keys_without_keep += sum(1 for kept in window_keys.values() if not kept)
        out.customers_in_windows += len(window_covered)
        out.customers_without_keep += sum(1 for kept in window_covered.values() if not kept)
        out.window_rates.append(window_seen / max(1, window_kept))
        out.window_throughputs.append(window_kept / window)
        out.window_top_shares.append(
            max(window_customers.values(), default=0) / max(1, window_kept)
        )
        window_keys = {}
        window_covered = {}
        window_customers = defaultdict(int)
        window_seen = window_kept = 0

    for trace in traces:
        now = trace.time
        decision = decide(trace, now)
        if now < from_time or now >= to_time:
            continue
        index = int((now - start) // window)
        if index != current:
            close_window()
            current = index
        spans = len(trace.spans)
        out.seen_traces += 1
        out.seen_spans += spans
        window_seen += spans
        customer_seen[trace.customer] += spans
        if decision.keep:
            out.kept_traces += 1
            out.kept_spans += spans
            window_kept += spans
            customer_kept[trace.customer] += spans
            window_customers[trace.customer] += spans
            window_keys[decision.key] = True
            window_covered[trace.customer] = True
        else:
            window_keys.setdefault(decision.key, False)
            window_covered.setdefault(trace.customer, False)
    close_window()
    out.seconds = to_time - from_time
    out.customer_kept = dict(customer_kept)
    out.customer_seen = dict(customer_seen)
    return out


class LateCounter(Decider, Protocol):
    """A decider that can also be told about late spans: the rules engine."""

    def count_late(self, decision: Decision, span_count: int, now: float) -> None: ...


def run_with_late_spans(
    engine: LateCounter,
    traces: Sequence[SimTrace],
    *,
    late_share: float,
    delay: float,
    count_late: bool,
    warmup: float,
) -> Outcome:
    """Decide each trace on all but `late_share` of its spans; the rest arrive `delay` seconds
    later and, when `count_late`, are reported to `engine.count_late`. Kept late spans count as
    kept (the pipeline forwards them); measured from `warmup` seconds in to the last trace."""
    start = traces[0].time
    from_time = start + warmup
    to_time = traces[-1].time
    out = Outcome()
    pending: deque[tuple[float, Decision, int]] = deque()

    def deliver(until: float) -> None:
        while pending and pending[0][0] <= until:
            when, decision, late = pending.popleft()
            if count_late:
                engine.count_late(decision, late, when)
            if from_time <= when < to_time:
                out.seen_spans += late
                if decision.keep:
                    out.kept_spans += late

    for trace in traces:
        now = trace.time
        deliver(now)
        spans = len(trace.spans)
        late = int(spans * late_share)
        head = SimTrace(trace.trace_id, trace.spans[: spans - late], now, trace.customer, 0)
        decision = engine.decide(head, now)
        if late:
            pending.append((now + delay, decision, late))
        if now >= from_time:
            out.seen_traces += 1
            out.seen_spans += spans - late
            if decision.keep:
                out.kept_traces += 1
                out.kept_spans += spans - late
    out.seconds = to_time - from_time
    return out
