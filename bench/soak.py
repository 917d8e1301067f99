"""Soak: twice the sustained rate for ten minutes, with every span accounted for.

    .venv/bin/python -m bench.soak [--mode backpressure|relieve] [--rate SPANS_PER_S]
                                   [--minutes 10] [--workers 1] [--outage 60 --outage-at 60]

Finds the sustained rate of `refinery-py serve` the way bench/run.py does (the quick ramp of
bench/ramp.py on a fresh server: the highest step with no refusals, no lost kept traces and its
decision latency in bounds), unless `--rate` gives it. Then a fresh server, with
`stress_relief.mode` as asked and `rules/default.yaml`, is offered twice that for `--minutes`
by the paced senders of bench/loadgen.py (which retry what is refused, as SDKs do). With
`--outage S` the sink answers UNAVAILABLE for S seconds from `--outage-at` on (a backend down
under load).

Printed: the machine's load, RSS of the server's process tree at the start, every minute and at
the end, and per minute what was accepted, refused, relieved and buffered. Then the senders
are paused (the replay in progress is finished, so no trace is left half-sent), the server
drains, and the books are closed from its metrics and the sink's own count:

    accepted  = refinery_spans_received_total (and the senders' count of spans answered 200)
    decided dropped = refinery_spans_decided_total{dropped} + refinery_late_spans_total{dropped}
                (the rules' drops, and stress relief's: refinery_stress_relief_spans_total)
    delivered = spans the sink received
    drops     = refinery_export_spans_total{outcome!=sent}, by reason
    uncounted = accepted - decided dropped - delivered - drops - still held   (must be 0)

Every excess span must have been refused (the senders kept it) or relieved (decided on
arrival), never accepted and lost. Results go to bench/results/soak-*/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import procstat, scrape
from bench.loadgen import PhaseStats, Senders
from bench.payloads import load as load_payloads
from bench.ramp import Bench, Plan, Result
from bench.run import QUICK
from bench.sink import SinkProcess
from bench.targets import REPO, Refinery, Settings

RESULTS = REPO / "bench" / "results"
RULES = REPO / "rules" / "default.yaml"
DROPS = ("rejected", "dropped_queue_full", "dropped_retries_exhausted", "dropped_shutdown")
MiB = 1 << 20


class SoakRefinery(Refinery):
    """`refinery-py serve` as bench/run.py configures it, with a stress relief mode and a
    memory budget of its own, logging at info (relief's and the exporter's lines)."""

    def __init__(self, settings: Settings, workers: int, mode: str, max_memory: str) -> None:
        super().__init__(settings, RULES, workers)
        self.name = f"soak-{mode}-w{workers}"
        self.log_path = settings.folder / f"{self.name}.log"
        self.mode = mode
        self.max_memory = max_memory

    def config(self) -> dict[str, object]:
        config = super().config()
        traces = config["traces"]
        assert isinstance(traces, dict)
        traces["max_memory"] = self.max_memory
        config["stress_relief"] = {"mode": self.mode}
        config["logging"] = {"level": "info"}
        return config


@dataclass
class Minute:
    at: float
    rss_mib: float
    accepted_per_s: float
    refused_requests: float
    relieved_spans: float
    relief_active: bool
    spans_waiting: float
    export_queue_spans: float
    delivered: int
    server_cores: float
    other_cores: float


@dataclass
class Books:
    accepted: float
    accepted_by_senders: int
    decided_kept: float
    decided_dropped: float
    late_kept: float
    late_dropped: float
    relieved_kept: float
    relieved_dropped: float
    delivered: int
    sent_metric: float
    drops: dict[str, float]
    still_held: float
    refused_requests: int
    refused_requests_metric: float
    failed_requests: int
    offered_spans: float

    @property
    def uncounted(self) -> float:
        return (
            self.accepted
            - self.decided_dropped
            - self.late_dropped
            - self.delivered
            - sum(self.drops.values())
            - self.still_held
        )


@dataclass
class Soak:
    mode: str
    workers: int
    sustained: float
    offered_rate: float
    minutes: float
    outage: float
    idle_rss_mib: float
    rss: list[Minute] = field(default_factory=list)
    end_rss_mib: float = 0.0
    peak_rss_mib: float = 0.0
    books: Books | None = None
    load_average: tuple[str, str] = ("", "")
    other_cores_mean: float = 0.0
    notes: list[str] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--mode", choices=("backpressure", "relieve"), default="backpressure")
    add("--rate", type=float, help="the sustained rate (spans/s); default: measure it")
    add("--factor", type=float, default=2.0, help="offered rate = factor × sustained")
    add("--minutes", type=float, default=10.0)
    add("--workers", type=int, default=1)
    add("--max-memory", default="1GiB", help="traces.max_memory of the soaked server")
    add("--outage", type=float, default=0.0, help="seconds the sink is down (0: none)")
    add("--outage-at", type=float, default=60.0, help="seconds into the soak the outage starts")
    add("--report-every", type=float, default=60.0, help="seconds between progress lines")
    add("--senders", type=int, default=1)
    add("--connections", type=int, default=32)
    add("--traces", type=int, default=3000, help="traces per sender's payload set")
    add("--drain-timeout", type=float, default=600.0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    folder = RESULTS / time.strftime(f"soak-%Y%m%dT%H%M%S-{args.mode}")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {load_average()}", flush=True)
    senders = Senders("http", args.senders, args.connections, args.traces)
    sink = SinkProcess()
    settings = Settings("http", sink.port, 2.0, 10.0, "none", folder)
    try:
        sustained = args.rate or measure_sustained(senders, sink, settings, args)
        soak = run_soak(senders, sink, settings, args, sustained)
    finally:
        senders.close()
        sink.stop()
    print_report(soak)
    path = folder / "results.json"
    path.write_text(json.dumps(asdict(soak), indent=2, default=str))
    print(f"results: {path.relative_to(REPO)}")


def measure_sustained(
    senders: Senders, sink: SinkProcess, settings: Settings, args: argparse.Namespace
) -> float:
    """bench/run.py's quick ramp on a fresh server (default rules, backpressure)."""
    print("finding the sustained rate (bench/ramp.py, quick plan)...", flush=True)
    payloads = [load_payloads(args.traces, seed) for seed in senders.seeds]
    plan = Plan(
        probe_seconds=QUICK.probe,
        step_seconds=QUICK.step * 2,
        fractions=tuple(float(f) for f in QUICK.steps.split(",")),
        latency_seconds=QUICK.load,
        refinements=QUICK.refinements,
        moves=QUICK.moves,
    )
    bench = Bench(senders, sink, payloads, plan)
    target = Refinery(settings, RULES, args.workers)
    result = Result(label=target.label, name=target.name, rules=str(RULES))
    bench._ramp(target, result)
    if result.sustained is None:
        raise SystemExit(f"no step was sustained: {[s.verdict for s in result.steps]}")
    sustained = result.sustained.achieved
    print(f"sustained: {sustained:,.0f} spans/s", flush=True)
    return sustained


def metrics_of(target: Refinery) -> str:
    return target._metrics() or ""


def total(text: str, name: str, label: str = "") -> float:
    return scrape.total(text, name, label) or 0.0


def run_soak(
    senders: Senders,
    sink: SinkProcess,
    settings: Settings,
    args: argparse.Namespace,
    sustained: float,
) -> Soak:
    rate = args.factor * sustained
    target = SoakRefinery(settings, args.workers, args.mode, args.max_memory)
    target.start()
    senders.target("127.0.0.1", target.ingest_port)
    time.sleep(1.0)
    idle = procstat.tree_usage(target.pid).rss_bytes / MiB
    soak = Soak(args.mode, args.workers, sustained, rate, args.minutes, args.outage, idle)
    soak.load_average = (load_average(), "")
    _, delivered_before, _ = sink.counts()
    print(
        f"soaking {target.label} (stress_relief {args.mode}) at {rate:,.0f} spans/s "
        f"({args.factor:g} × {sustained:,.0f}) for {args.minutes:g} min; RSS at start "
        f"{idle:.0f} MiB",
        flush=True,
    )
    try:
        senders.phase("soak", rate)
        started = time.monotonic()
        seconds = args.minutes * 60
        outage_at, outage_end = args.outage_at, args.outage_at + args.outage
        down = False
        last = _Reading.take(target, sink, senders)
        next_report = args.report_every
        while (elapsed := time.monotonic() - started) < seconds:
            time.sleep(min(1.0, seconds - elapsed))
            elapsed = time.monotonic() - started
            if args.outage and not down and outage_at <= elapsed < outage_end:
                sink.down()
                down = True
                print(f"  {elapsed:5.0f} s  the sink is down", flush=True)
            elif down and elapsed >= outage_end:
                sink.up()
                down = False
                print(f"  {elapsed:5.0f} s  the sink is back", flush=True)
            soak.peak_rss_mib = max(
                soak.peak_rss_mib, procstat.tree_usage(target.pid).rss_bytes / MiB
            )
            if elapsed >= next_report or elapsed >= seconds:
                now = _Reading.take(target, sink, senders)
                minute = now.minus(last, elapsed)
                soak.rss.append(minute)
                print(format_minute(minute), flush=True)
                last = now
                next_report += args.report_every
        if down:
            sink.up()
        soak.end_rss_mib = procstat.tree_usage(target.pid).rss_bytes / MiB
        senders.pause()  # finishes the replay in progress: no trace is left half-sent
        paused = time.monotonic()
        stats, acks = senders.report("soak")
        # Every request answered 200, also those that finished the replay after the phase.
        counts = [load_payloads(args.traces, seed).span_counts for seed in senders.seeds]
        stats.accepted_spans = sum(counts[sender][index] for sender, index, _, _ in acks)
        print("draining...", flush=True)
        if not drain(target, sink, args.drain_timeout):
            soak.notes.append(f"the server had not drained after {args.drain_timeout:.0f} s")
        # The senders offered `rate` until the pause had finished the replay in progress.
        offered = rate * (paused - started)
        soak.books = close_books(target, sink, stats, delivered_before, offered)
        soak.load_average = (soak.load_average[0], load_average())
        soak.other_cores_mean = sum(m.other_cores for m in soak.rss) / max(1, len(soak.rss))
    finally:
        target.stop(60)
    return soak


@dataclass
class _Reading:
    at: float
    received: float
    refused: float
    relieved: float
    server_cpu: float
    busy: float
    mine: float
    text: str
    delivered: int
    rss: float

    @classmethod
    def take(cls, target: Refinery, sink: SinkProcess, senders: Senders) -> _Reading:
        text = metrics_of(target)
        server = procstat.tree_usage(target.pid)
        mine = server.cpu_seconds + procstat.usage(senders.pids).cpu_seconds
        mine += procstat.cpu_seconds(sink.pid)
        return cls(
            at=time.monotonic(),
            received=total(text, "refinery_spans_received_total"),
            refused=total(text, "refinery_requests_rejected_total", 'reason="overloaded"'),
            relieved=total(text, "refinery_stress_relief_spans_total"),
            server_cpu=server.cpu_seconds,
            busy=procstat.machine_busy_seconds(),
            mine=mine + procstat.cpu_seconds(os.getpid()),
            text=text,
            delivered=sink.counts()[1],
            rss=server.rss_bytes / MiB,
        )

    def minus(self, before: _Reading, elapsed: float) -> Minute:
        seconds = max(1e-9, self.at - before.at)
        others = (self.busy - before.busy) - (self.mine - before.mine)
        return Minute(
            at=elapsed,
            rss_mib=self.rss,
            accepted_per_s=(self.received - before.received) / seconds,
            refused_requests=self.refused - before.refused,
            relieved_spans=self.relieved - before.relieved,
            relief_active=bool(total(self.text, "refinery_stress_relief_active")),
            spans_waiting=total(self.text, "refinery_spans_waiting"),
            export_queue_spans=total(self.text, "refinery_export_queue_spans"),
            delivered=self.delivered,
            server_cores=(self.server_cpu - before.server_cpu) / seconds,
            other_cores=max(0.0, others / seconds),
        )


def format_minute(m: Minute) -> str:
    return (
        f"  {m.at:5.0f} s  RSS {m.rss_mib:6.0f} MiB  accepted {m.accepted_per_s:8,.0f} spans/s  "
        f"refused {m.refused_requests:6,.0f} req  relieved {m.relieved_spans:9,.0f} spans"
        f"{' (on)' if m.relief_active else ''}  buffered {m.spans_waiting:8,.0f}  export queue "
        f"{m.export_queue_spans:7,.0f}  server {m.server_cores:.2f} cores, others "
        f"{m.other_cores:.2f}"
    )


def drain(target: Refinery, sink: SinkProcess, timeout: float) -> bool:
    """Until nothing is buffered or queued and the sink has been quiet for 2 s."""
    deadline = time.monotonic() + timeout
    last, quiet_since = sink.counts()[1], time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        spans = sink.counts()[1]
        now = time.monotonic()
        if spans != last:
            last, quiet_since = spans, now
        if target.backlog().drained and now - quiet_since >= 2.0:
            return True
    return False


def close_books(
    target: Refinery, sink: SinkProcess, stats: PhaseStats, delivered_before: int, offered: float
) -> Books:
    text = metrics_of(target)
    return Books(
        accepted=total(text, "refinery_spans_received_total"),
        accepted_by_senders=stats.accepted_spans,
        decided_kept=total(text, "refinery_spans_decided_total", 'decision="kept"'),
        decided_dropped=total(text, "refinery_spans_decided_total", 'decision="dropped"'),
        late_kept=total(text, "refinery_late_spans_total", 'decision="kept"'),
        late_dropped=total(text, "refinery_late_spans_total", 'decision="dropped"'),
        relieved_kept=total(text, "refinery_stress_relief_spans_total", 'decision="kept"'),
        relieved_dropped=total(text, "refinery_stress_relief_spans_total", 'decision="dropped"'),
        delivered=sink.counts()[1] - delivered_before,
        sent_metric=total(text, "refinery_export_spans_total", 'outcome="sent"'),
        drops={d: total(text, "refinery_export_spans_total", f'outcome="{d}"') for d in DROPS},
        still_held=total(text, "refinery_spans_waiting")
        + total(text, "refinery_export_queue_spans"),
        refused_requests=stats.rejected_requests,
        refused_requests_metric=total(
            text, "refinery_requests_rejected_total", 'reason="overloaded"'
        ),
        failed_requests=stats.failed_requests,
        offered_spans=offered,
    )


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def print_report(soak: Soak) -> None:
    print()
    print(
        f"soak, stress_relief {soak.mode}, --workers {soak.workers}: {soak.offered_rate:,.0f} "
        f"spans/s offered ({soak.offered_rate / soak.sustained:.1f} × sustained "
        f"{soak.sustained:,.0f}) for {soak.minutes:g} min"
        + (f", sink down for {soak.outage:g} s" if soak.outage else "")
    )
    print(
        f"machine: load average {soak.load_average[0]} before, {soak.load_average[1]} after; "
        f"other processes used {soak.other_cores_mean:.2f} cores on average"
    )
    curve = ", ".join(f"{m.at:.0f} s {m.rss_mib:.0f}" for m in soak.rss)
    print(
        f"RSS (MiB): start {soak.idle_rss_mib:.0f}, {curve}; end of load {soak.end_rss_mib:.0f}, "
        f"peak {soak.peak_rss_mib:.0f}"
    )
    books = soak.books
    if books is None:
        return
    drops = ", ".join(f"{k} {v:,.0f}" for k, v in books.drops.items())
    rows = [
        ("offered (spans)", f"{books.offered_spans:,.0f}"),
        (
            "not sent",
            f"{books.offered_spans - books.accepted_by_senders:,.0f} spans the paced senders "
            "could not send on time (every connection waiting for an answer or a Retry-After)",
        ),
        ("accepted (spans)", f"{books.accepted:,.0f} (senders: {books.accepted_by_senders:,})"),
        (
            "refused (requests)",
            f"{books.refused_requests:,} by the senders' count, "
            f"{books.refused_requests_metric:,.0f} by the node's",
        ),
        ("failed requests", f"{books.failed_requests:,}"),
        (
            "relieved (spans)",
            f"{books.relieved_kept + books.relieved_dropped:,.0f} "
            f"(kept {books.relieved_kept:,.0f}, dropped {books.relieved_dropped:,.0f})",
        ),
        (
            "decided (spans)",
            f"kept {books.decided_kept + books.late_kept:,.0f}, dropped "
            f"{books.decided_dropped + books.late_dropped:,.0f} (late spans included)",
        ),
        ("delivered (spans)", f"{books.delivered:,} (node: sent {books.sent_metric:,.0f})"),
        ("counted drops", drops),
        ("still held", f"{books.still_held:,.0f}"),
        ("uncounted", f"{books.uncounted:,.0f}"),
    ]
    for name, value in rows:
        print(f"  {name:<20} {value}")
    for note in soak.notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
