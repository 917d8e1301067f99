"""Must-keep traces under overload: what a node keeps when it refuses requests.

    .venv/bin/python -m bench.overload_keep --rate 160000 [--workers 2] [--rules FILE]
        [--waits 0s,10s] [--rounds 3] [--seconds 15] [--warm 6]

A node offered more than it holds refuses requests (429 with a retry hint), and the senders send
them again. A refused request's spans can then reach the node after their trace was decided: an
error among them no longer keeps its trace. This tool measures that at one offered rate, for
each value of `traces.refusal_wait` in `--waits` (0s: decisions never wait for refused spans),
the values taking turns round after round on fresh servers so a slow spell of the machine falls
on all of them.

Per run it prints what the node accepted and refused; the must-keep traces (errors and flagged
transactions) whose root was acknowledged in the measured phase, how many of them never
reached the sink (a kept trace's root is what the check looks for), and of those, how many were
kept in part (their error span reached the sink without the root: rescued after the rest of the
trace was dropped); the p99 decision latency (root acknowledged → root at the sink); the
buffer's peak (sampled each second); and the late spans by what happened to them (kept,
dropped, rescued).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench import latency, scrape
from bench.loadgen import Senders
from bench.payloads import PayloadSet
from bench.payloads import load as load_payloads
from bench.sink import SinkProcess
from bench.targets import REPO, Refinery, Settings

RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class Run:
    wait: str
    round: int
    accepted_per_second: float
    refused_requests: int
    must_keep: int
    must_keep_missing: int
    must_keep_partial: int
    """Of the missing, how many had their error kept without the root (rescued)."""
    p99: float
    buffer_peak_bytes: float
    late: dict[str, float]

    def line(self) -> str:
        late = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(self.late.items()))
        return (
            f"round {self.round} refusal_wait {self.wait}: accepted {self.accepted_per_second:,.0f}"
            f" spans/s, refused {self.refused_requests} requests; must-keep missing "
            f"{self.must_keep_missing} of {self.must_keep} ({self.must_keep_partial} kept in part)"
            f"; p99 {self.p99:.2f} s; buffer peak "
            f"{self.buffer_peak_bytes / 2**20:,.0f} MiB; late spans: {late or 'none'}"
        )


def late_spans(text: str | None) -> dict[str, float]:
    """`refinery_late_spans_total` by decision, summed over workers."""
    found: dict[str, float] = {}
    for decision in ("kept", "dropped", "rescued"):
        value = scrape.total(text or "", "refinery_late_spans_total", f'decision="{decision}"')
        if value:
            found[decision] = value
    return found


def measure(
    senders: Senders,
    sink: SinkProcess,
    payloads: list[PayloadSet],
    settings: Settings,
    args: argparse.Namespace,
    *,
    wait: str,
    number: int,
) -> Run:
    node = Refinery(
        settings, args.rules, args.workers, overrides={"traces": {"refusal_wait": wait}}
    )
    node.start()
    try:
        senders.target("127.0.0.1", *node.ingest_ports)
        senders.phase("warm", args.rate)
        time.sleep(args.warm)
        senders.report("warm")
        sink.take_roots()
        sink.take_errored()
        start = time.monotonic()
        senders.phase("measured", args.rate)
        peak = 0.0
        for _ in range(int(args.seconds)):
            time.sleep(1)
            peak = max(peak, node.backlog().buffer_bytes or 0.0)
        stats, acks = senders.report("measured")
        end = time.monotonic()
        senders.pause()
        # Every trace acknowledged in the phase decided and exported, refusal waits included.
        time.sleep(settings.send_delay + args.settle)
        measured = latency.measure(
            acks, start, end, payloads, sink.take_roots(), errored=sink.take_errored()
        )
        late = late_spans(node._metrics())
    finally:
        senders.pause()
        node.stop(60)
    return Run(
        wait,
        number,
        stats.spans_per_second,
        stats.rejected_requests,
        measured.must_keep,
        measured.must_keep_missing,
        measured.must_keep_partial,
        measured.p99,
        peak,
        late,
    )


def summary(runs: list[Run]) -> list[str]:
    lines = []
    for wait in dict.fromkeys(r.wait for r in runs):
        mine = [r for r in runs if r.wait == wait]
        lines.append(
            f"refusal_wait {wait}: must-keep missing {sum(r.must_keep_missing for r in mine)} "
            f"of {sum(r.must_keep for r in mine)} in {len(mine)} runs "
            f"({sum(r.must_keep_partial for r in mine)} kept in part); p99 median "
            f"{statistics.median(r.p99 for r in mine):.2f} s; buffer peak median "
            f"{statistics.median(r.buffer_peak_bytes for r in mine) / 2**20:,.0f} MiB; "
            f"accepted median {statistics.median(r.accepted_per_second for r in mine):,.0f}"
            " spans/s"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--rate", type=float, required=True, help="offered spans/s (more than the node holds)")
    add("--workers", type=int, default=2)
    add("--rules", type=Path, default=REPO / "bench" / "rules" / "trace-scope.yaml")
    add("--waits", default="0s,10s", help="traces.refusal_wait values, in turn (default 0s,10s)")
    add("--rounds", type=int, default=3)
    add("--seconds", type=float, default=15.0, help="measured seconds per run")
    add("--warm", type=float, default=6.0, help="warm-up seconds per run, not measured")
    add("--connections", type=int, default=32, help="connections of the sender process")
    add(
        "--settle",
        type=float,
        default=12.0,
        help="seconds after send_delay for the last traces to reach the sink (refusal_wait's "
        "10 s and the export)",
    )
    add("--traces", type=int, default=3000, help="traces in the sender's payload set")
    add("--logs", type=Path, help="servers' configs and logs (default: bench/results/overload-*)")
    args = parser.parse_args(argv)
    args.waits = [w.strip() for w in args.waits.split(",") if w.strip()]
    args.rules = args.rules.resolve()
    return args


def main(argv: list[str] | None = None) -> list[Run]:
    args = parse_args(argv)
    folder = args.logs or RESULTS / f"overload-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    senders = Senders("http", 1, args.connections, args.traces)
    sink = SinkProcess()
    payloads = [load_payloads(args.traces, seed) for seed in senders.seeds]
    settings = Settings("http", sink.port, 2.0, 10.0, "none", folder)
    runs: list[Run] = []
    try:
        for number in range(1, args.rounds + 1):
            for wait in args.waits:
                run = measure(senders, sink, payloads, settings, args, wait=wait, number=number)
                runs.append(run)
                print(run.line(), flush=True)
    finally:
        senders.close()
        sink.stop()
    print()
    print("\n".join(summary(runs)))
    return runs


if __name__ == "__main__":
    main()
