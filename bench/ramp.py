"""The measurement of one server: probe, ramp to the sustained rate, then hold 80% of it.

1. Probe (fresh server A): the senders post flat out for `probe_seconds`; the accepted rate is
   the ramp's reference. A server that buffers faster than it decides overshoots here, so:
2. Ramp (same server, after it drained): steps at `fractions` of the probe rate, back to back,
   each `step_seconds`. A step passes when the server took every request (no rejects, no
   failures), the senders achieved ≥ 95% of the offered rate, no trace that must be kept was
   lost, and the p99 decision latency of the traces whose root was acknowledged in the step
   stayed within `lag_tolerance` of the server's nominal delay (a server falling behind decides
   later and later). The ramp stops at the first step that fails on the spot; latency is judged
   once the server drained. Then `refinements` bisection steps (each after a drain) between the
   highest step of the unbroken passing run from the bottom and the step that failed above it
   (when even the first step failed, first up to `moves` steps down by 40% each until one
   passes; when the top step passed, up to `moves` more steps up by 25% until one fails).
   Sustained = the accepted spans/s of the highest passing step.
3. Load (fresh server B, so memory reflects steady state, not the ramp's overload): offered
   `load_fraction` × sustained, first for a warm-up of send_delay + 1 s that is not measured
   (nothing is decided before send_delay), then for `latency_seconds`, measured: decision
   latency p50/p99, RSS, buffered spans and buffer bytes sampled through it, and CPU per 100 k
   spans from the server's utime + stime over it (in the steady state, so the window holds both
   the buffering and the deciding of as many spans as it accepts); peak RSS = VmHWM of B.
4. Reference (optional, same server B after it drained): the load phase again, warm-up and all,
   at another run's load rate, so that two configurations' CPU per span compare on the same
   traffic (two workers at one worker's load).
CPU of the server (process tree), the senders and the sink is read from /proc around each phase.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import procstat
from bench.latency import Ack, Latency
from bench.latency import measure as measure_latency
from bench.loadgen import Senders
from bench.payloads import PayloadSet
from bench.sink import SinkProcess
from bench.targets import Backlog, Collector, Target

DESCENT = 0.6
ASCENT = 1.25
"""When even the ramp's first step fails, step down by DESCENT (or, when its top step passed, up
by ASCENT), up to `Plan.moves` times, before bisecting."""


@dataclass(frozen=True)
class Plan:
    probe_seconds: float
    step_seconds: float
    fractions: tuple[float, ...]
    latency_seconds: float
    load_fraction: float = 0.8
    lag_tolerance: float = 0.75
    min_achieved: float = 0.95
    drain_timeout: float = 30.0
    sample_every: float = 0.5
    refinements: int = 1
    """Bisection steps between the highest passing and the lowest failing step."""
    moves: int = 3


@dataclass
class Step:
    """One phase at one offered rate."""

    name: str
    offered: float
    """spans/s asked of the senders (0: as fast as accepted)."""
    achieved: float
    """spans/s accepted by the server."""
    accepted_spans: int
    rejected: int
    failed: int
    errors: list[str]
    started: float
    ended: float
    server_cores: float
    sender_cores: float
    sink_cores: float
    other_cores: float
    """CPU used by everything else on the machine (other users' jobs make figures noisy)."""
    server_cpu_seconds: float
    concurrency: float
    """Requests in flight on average (Little's law): near the connection count = client-bound."""
    slowest_request: float
    peak_waiting: float
    """Most spans the server held (its metrics; traces × mean spans for the Collector)."""
    latency: Latency | None = None
    verdict: str = "ok"


@dataclass
class Load:
    """The steady phase at `load_fraction` × sustained, on a fresh server."""

    step: Step
    idle_rss: int
    mean_rss: float
    peak_rss: int
    spans_waiting: float | None
    buffer_bytes: float | None
    bytes_per_span_metric: float | None
    bytes_per_span_rss: float | None
    cpu_per_100k: float
    reference: Step | None = None
    """A second measured phase on the same server at another run's load rate (`Bench.run`)."""

    @property
    def reference_cpu_per_100k(self) -> float | None:
        """CPU per 100k spans at the reference rate, when that phase ran and held."""
        step = self.reference
        if step is None or step.verdict != "ok":
            return None
        return step.server_cpu_seconds / max(1, step.accepted_spans) * 100_000


@dataclass
class Result:
    label: str
    name: str
    rules: str
    probe: Step | None = None
    steps: list[Step] = field(default_factory=list)
    sustained: Step | None = None
    failing: Step | None = None
    """The lowest failing step above `sustained`."""
    load: Load | None = None
    ramp_peak_rss: int = 0
    floor: float = 0.0
    """The protobuf floor (spans/s) measured just before this server's turn."""
    notes: list[str] = field(default_factory=list)


class Bench:
    """Runs the procedure above for one target with shared senders and sink."""

    def __init__(
        self, senders: Senders, sink: SinkProcess, payloads: list[PayloadSet], plan: Plan
    ) -> None:
        self.senders = senders
        self.sink = sink
        self.payloads = payloads
        self.plan = plan
        self.acks: list[Ack] = []
        self.arrivals: dict[bytes, float] = {}
        spans = sum(p.spans for p in payloads)
        self.spans_per_trace = spans / sum(sum(map(len, p.roots)) for p in payloads)

    # ---- one phase ----------------------------------------------------------------------

    def _cpu(self, target: Target) -> tuple[float, float, float, float]:
        return (
            procstat.tree_usage(target.pid).cpu_seconds,
            procstat.usage(self.senders.pids).cpu_seconds,
            procstat.cpu_seconds(self.sink.pid),
            procstat.machine_busy_seconds(),
        )

    def phase(
        self,
        target: Target,
        name: str,
        rate: float,
        seconds: float,
        *,
        sample: Callable[[float, Backlog], None] | None = None,
        pause: bool = True,
    ) -> Step:
        """Offer `rate` spans/s for `seconds`, then count; pause the senders unless told not to
        (ramp steps follow each other without a gap: the next step changes the rate).

        The server's own backlog gauge (spans waiting, or traces for the Collector) is read
        every `sample_every` seconds; its peak goes into the step, for the record.
        """
        before = self._cpu(target)
        self.senders.phase(name, rate)
        started = time.monotonic()
        peak = 0.0
        while (now := time.monotonic()) < started + seconds:
            time.sleep(min(self.plan.sample_every, started + seconds - now))
            backlog = target.backlog()
            waiting = backlog.spans_waiting
            if waiting is None and backlog.traces_waiting is not None:
                waiting = backlog.traces_waiting * self.spans_per_trace
            peak = max(peak, waiting or 0.0)
            if sample is not None:
                sample(time.monotonic() - started, backlog)
        after = self._cpu(target)
        elapsed = time.monotonic() - started
        if pause:
            self.senders.pause()  # finishes the replay in progress: outside the CPU window
        stats, acks = self.senders.report(name)  # ends the phase if it still runs
        self.acks.extend(acks)
        cores = [(b - a) / elapsed for a, b in zip(before, after, strict=True)]
        step = Step(
            name=name,
            offered=rate,
            achieved=stats.spans_per_second,
            accepted_spans=stats.accepted_spans,
            rejected=stats.rejected_requests,
            failed=stats.failed_requests,
            errors=stats.errors,
            started=stats.started,
            ended=stats.ended,
            server_cores=cores[0],
            sender_cores=cores[1],
            sink_cores=cores[2],
            other_cores=max(0.0, cores[3] - sum(cores[:3])),
            server_cpu_seconds=after[0] - before[0],
            concurrency=stats.request_seconds / stats.seconds,
            slowest_request=stats.slowest_request,
            peak_waiting=peak,
        )
        if step.rejected:
            step.verdict = f"{step.rejected} requests rejected"
        elif step.failed:
            step.verdict = f"{step.failed} requests failed ({'; '.join(step.errors[:2])})"
        elif rate > 0 and step.achieved < self.plan.min_achieved * rate:
            step.verdict = f"accepted only {step.achieved / 1000:,.1f}k spans/s"
        return step

    def drain(self, target: Target) -> bool:
        """Wait until the server holds nothing and the sink has been quiet; collect arrivals."""
        self.senders.pause()
        deadline = time.monotonic() + self.plan.drain_timeout
        last, quiet_since = self.sink.counts()[1], time.monotonic()
        empty_since: float | None = None
        drained = False
        while (now := time.monotonic()) < deadline:
            time.sleep(0.1)
            spans = self.sink.counts()[1]
            if spans != last:
                last, quiet_since = spans, now
            if not target.backlog().drained:
                empty_since = None
                continue
            empty_since = empty_since or now
            if now - empty_since >= target.settle_seconds and now - quiet_since >= 0.3:
                drained = True
                break
        self.arrivals.update(self.sink.take_roots())
        return drained

    def latency(self, step: Step) -> Latency:
        return measure_latency(self.acks, step.started, step.ended, self.payloads, self.arrivals)

    # ---- the procedure ------------------------------------------------------------------

    def run(self, target: Target, rules: str, reference_rate: float | None = None) -> Result:
        """Measure `target`. With `reference_rate` (another run's load rate), the load phase's
        server is also measured at that rate, so two configurations' CPU per span can be
        compared on the same traffic: at their own 80%, the faster one runs at a higher load,
        where this machine's two cores are shared with more sender and sink work."""
        result = Result(label=target.label, name=target.name, rules=rules)
        self._ramp(target, result)
        if result.sustained is not None:
            self._load(
                target, result, self.plan.load_fraction * result.sustained.achieved, reference_rate
            )
        else:
            result.notes.append("no step was sustained: no load phase")
        phases = [*([result.probe] if result.probe else []), *result.steps]
        phases += [result.load.step] if result.load else []
        busy = max((step.other_cores for step in phases), default=0.0)
        if busy > 0.25:
            result.notes.append(
                f"other processes on the machine used up to {busy:.2f} cores meanwhile: "
                "figures are noisy"
            )
        return result

    def _start(self, target: Target) -> None:
        target.start()
        self.senders.target("127.0.0.1", *target.ingest_ports)
        self.acks, self.arrivals = [], {}
        self.sink.take_roots()

    def _ramp(self, target: Target, result: Result) -> None:
        plan = self.plan
        passing: Step | None = None
        failing: Step | None = None
        self._start(target)
        try:
            result.probe = probe = self.phase(target, "probe", 0.0, plan.probe_seconds)
            if not self.drain(target):
                result.notes.append("server still busy after the probe's drain timeout")
            if probe.achieved <= 0:
                result.notes.append(f"probe accepted nothing: {probe.verdict}")
                return
            for number, fraction in enumerate(plan.fractions, 1):
                step = self.phase(
                    target,
                    f"step{number}",
                    fraction * probe.achieved,
                    plan.step_seconds,
                    pause=False,
                )
                result.steps.append(step)
                if step.verdict != "ok":
                    break
            if not self.drain(target):
                result.notes.append("server still busy after the ramp's drain timeout")
            self._judge(target, result.steps)
            passing, failing = _bounds(result.steps)
            bisections = moves = 0
            while True:
                if failing is None and passing is not None and moves < plan.moves:
                    moves += 1  # the top step passed: go on up
                    rate = ASCENT * passing.offered
                elif failing is not None and passing is None and moves < plan.moves:
                    moves += 1  # even the first step failed: step down
                    rate = DESCENT * failing.offered
                elif failing and passing and bisections < plan.refinements:
                    bisections += 1
                    rate = (passing.offered + failing.offered) / 2
                else:
                    break
                step = self.phase(target, f"refine{bisections + moves}", rate, plan.step_seconds)
                result.steps.append(step)
                self.drain(target)
                self._judge(target, [step])
                if step.verdict == "ok":
                    passing = step
                else:
                    failing = step
            result.ramp_peak_rss = procstat.tree_usage(target.pid).hwm_bytes
            if isinstance(target, Collector) and (dropped := target.dropped_too_early()):
                result.notes.append(f"the Collector dropped {dropped:.0f} traces undecided")
        finally:
            target.stop(5)
        result.sustained, result.failing = passing, failing
        if failing is None and passing is not None:
            result.notes.append("the top ramp step passed: sustained may be higher (see --steps)")

    def _judge(self, target: Target, steps: list[Step]) -> None:
        """Add the latency verdicts once the steps' traces had time to be decided."""
        limit = target.nominal_delay() + self.plan.lag_tolerance
        for step in steps:
            step.latency = latency = self.latency(step)
            if step.verdict != "ok":
                continue
            if latency.must_keep_missing:
                step.verdict = f"lost {latency.must_keep_missing}/{latency.must_keep} kept traces"
            elif not latency.p99 <= limit:
                step.verdict = f"p99 latency {latency.p99:.2f}s > {limit:.2f}s"

    def _load(
        self, target: Target, result: Result, rate: float, reference_rate: float | None = None
    ) -> None:
        reference: Step | None = None
        self._start(target)
        samples: list[tuple[int, Backlog]] = []

        def sample(_: float, backlog: Backlog) -> None:
            samples.append((procstat.tree_usage(target.pid).rss_bytes, backlog))

        try:
            time.sleep(0.5)
            idle_rss = procstat.tree_usage(target.pid).rss_bytes
            warm, step = self._warmed_phase(target, "load", rate, sample)
            if warm.rejected or warm.failed:
                result.notes.append(
                    f"while warming up for the 80% phase (not measured) the fresh server refused "
                    f"{warm.rejected} and failed {warm.failed} requests"
                )
            if not self.drain(target):
                result.notes.append("server still busy after the load phase's drain timeout")
            peak_rss = procstat.tree_usage(target.pid).hwm_bytes
            if reference_rate:
                reference = self._reference(target, result, reference_rate)
        finally:
            target.stop(30)
        self._judge_losses(step)
        if step.verdict != "ok":
            result.notes.append(f"the 80% load phase did not hold: {step.verdict}")
        mean_rss = _mean([rss for rss, _ in samples]) or float(idle_rss)
        spans = _mean([b.spans_waiting for _, b in samples])
        if spans is None:
            traces = _mean([b.traces_waiting for _, b in samples])
            spans = traces * self.spans_per_trace if traces is not None else None
        buffer_bytes = _mean([b.buffer_bytes for _, b in samples])
        result.load = Load(
            step=step,
            idle_rss=idle_rss,
            mean_rss=mean_rss,
            peak_rss=peak_rss,
            spans_waiting=spans,
            buffer_bytes=buffer_bytes,
            bytes_per_span_metric=buffer_bytes / spans if buffer_bytes and spans else None,
            bytes_per_span_rss=(mean_rss - idle_rss) / spans if spans else None,
            cpu_per_100k=step.server_cpu_seconds / max(1, step.accepted_spans) * 100_000,
            reference=reference,
        )
        if not samples:
            result.notes.append("load phase too short to sample after warm-up")

    def _reference(self, target: Target, result: Result, rate: float) -> Step:
        """The load phase again at `rate` (after a warm-up, as above) on the same server."""
        warm, step = self._warmed_phase(target, "reference", rate)
        if warm.rejected or warm.failed:
            step.verdict = f"refused {warm.rejected} requests while warming up"
        if not self.drain(target):
            result.notes.append("server still busy after the reference phase's drain timeout")
        self._judge_losses(step)
        if step.verdict != "ok":
            result.notes.append(f"the phase at the reference load did not hold: {step.verdict}")
        return step

    def _warmed_phase(
        self,
        target: Target,
        name: str,
        rate: float,
        sample: Callable[[float, Backlog], None] | None = None,
    ) -> tuple[Step, Step]:
        """(warm-up, measured phase) at `rate`. Until send_delay has passed nothing is decided,
        and a window that starts with the traffic would count buffering without the deciding it
        leads to: so send_delay + 1 s unmeasured first."""
        warm = self.phase(
            target, f"{name} warm-up", rate, target.settings.send_delay + 1.0, pause=False
        )
        return warm, self.phase(target, name, rate, self.plan.latency_seconds, sample=sample)

    def _judge_losses(self, step: Step) -> None:
        """The phase's decision latency; a must-keep trace missing makes its verdict."""
        step.latency = self.latency(step)
        if step.latency.must_keep_missing:
            step.verdict = f"lost {step.latency.must_keep_missing} kept traces"


def _bounds(steps: list[Step]) -> tuple[Step | None, Step | None]:
    """(last step of the unbroken passing run from the bottom, the first step after it)."""
    passing = None
    for step in steps:
        if step.verdict != "ok":
            return passing, step
        passing = step
    return passing, None


def _mean(values: list[float | None] | list[int]) -> float | None:
    present = [float(v) for v in values if v is not None and not math.isnan(v)]
    return sum(present) / len(present) if present else None
