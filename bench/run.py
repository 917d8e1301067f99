"""End-to-end benchmark: refinery_py beside the OpenTelemetry Collector's tail sampler.

    .venv/bin/python -m bench.run [--quick] [--workers N ...] [--rules FILE ...] [--protocol grpc]
    make bench / make bench-quick

Starts the sender processes (pre-built payloads, bench/loadgen.py) and an OTLP sink
(bench/sink.py); measures the protobuf floor on the same payloads (bench/floor.py) and the
senders' own ceiling against a do-nothing server (bench/ceiling.py); then, for each refinery_py
configuration (rules file × --workers) and for the Collector built by `make peers`, runs the
procedure of bench/ramp.py: probe, ramp to the sustained rate, hold 80% of it on a fresh server.
Prints one table with the issue's targets checked, and writes the figures as JSON under
bench/results/. What each figure means and how it is measured: bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import ceiling, floor, procstat, report
from bench.loadgen import Senders
from bench.payloads import load as load_payloads
from bench.ramp import Bench, Plan, Result
from bench.report import Context
from bench.sink import SinkProcess
from bench.targets import (
    COLLECTOR_BINARY,
    REPO,
    Collector,
    Refinery,
    Settings,
    Target,
    serve_supports_workers,
)

RESULTS = REPO / "bench" / "results"
QUIET_CORES = 0.25
DEFAULT_RULES = REPO / "rules" / "default.yaml"
TRACE_SCOPE_RULES = REPO / "bench" / "rules" / "trace-scope.yaml"
"""Rules as users write them (every condition on any span of the trace): issue 13's."""


@dataclass(frozen=True)
class Mode:
    """Sizes of a quick or a full run; every one can be overridden on the command line."""

    name: str
    traces: int
    probe: float
    step: float
    steps: str
    load: float
    send_delay: float
    refinements: int
    moves: int


QUICK = Mode("quick", 1000, 1.0, 1.5, "0.45,0.75,1.05", 3.5, 1.0, 1, 2)
FULL = Mode("full", 3000, 5.0, 5.0, "0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1", 15.0, 2.0, 2, 3)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="short run, about 75 s once payloads are cached")
    add("--protocol", choices=("http", "grpc"), default="http", help="OTLP transport to servers")
    add("--senders", type=int, default=1, help="sender processes")
    add("--connections", type=int, default=32, help="connections (threads) per sender process")
    add("--traces", type=int, help="traces per sender's payload set (replayed with fresh IDs)")
    add("--rules", type=Path, action="append", help="refinery rules file (repeatable)")
    add("--workers", type=int, action="append", help="serve --workers N (repeatable)")
    add(
        "--front",
        type=int,
        action="append",
        metavar="N",
        help="also serve --workers N behind a trace-ID-routing front: the senders split each "
        "request by trace ID over the per-worker ports (repeatable; full mode: 2)",
    )
    add("--no-refinery", action="store_true", help="run only the Collector")
    add("--no-collector", action="store_true", help="run only refinery_py")
    add("--store", action="store_true", help="keep refinery_py's embedded store on")
    add("--send-delay", type=float, help="refinery send_delay = collector root wait (seconds)")
    add("--trace-timeout", type=float, default=10.0, help="= collector decision_wait (seconds)")
    add("--compression", choices=("none", "gzip"), default="none", help="exports to the sink")
    add("--probe-seconds", type=float)
    add("--step-seconds", type=float)
    add("--steps", help="ramp steps as fractions of the probe rate, e.g. 0.5,0.75,1")
    add("--load-seconds", type=float, help="length of the 80%% load phase")
    add("--lag-tolerance", type=float, default=0.75, help="p99 over nominal delay still passing")
    add("--json", type=Path, help="where to write the results (default: bench/results/)")
    add(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each server, wait up to this long for other processes to use < 0.25 cores",
    )
    return parser.parse_args()


@dataclass(frozen=True)
class RefineryRun:
    """One refinery_py configuration to measure."""

    rules: Path
    workers: int | None
    front: bool = False


def refinery_runs(args: argparse.Namespace, notes: list[str]) -> list[RefineryRun]:
    """The refinery_py runs: every rules file with every --workers count, then with every
    --front count, so each rule set's scaling and CPU per span show side by side."""
    if args.no_refinery:
        return []
    rules = [path.resolve() for path in args.rules or []] or [DEFAULT_RULES, TRACE_SCOPE_RULES]
    workers: list[int | None] = list(args.workers or [])
    fronts: list[int] = list(args.front or [])
    if serve_supports_workers():
        # Explicit counts: the server's own default is one worker per CPU.
        workers = workers or ([1] if args.quick else [1, 2])
        fronts = fronts if args.front is not None else ([] if args.quick else [2])
    else:
        asked = f" (asked for --workers {', '.join(map(str, workers))})" if workers else ""
        notes.append(
            f"`refinery-py serve` has no --workers option yet{asked}: refinery_py ran as one "
            "process, without the flag"
        )
        workers, fronts = [], []
    workers = workers or [None]
    return [
        run
        for r in rules
        for run in [RefineryRun(r, w) for w in workers]
        + [RefineryRun(r, n, front=True) for n in fronts]
    ]


def main() -> None:
    args = parse_args()
    # SIGTERM (a timeout, a CI job cancelled) unwinds like Ctrl-C: no server outlives the run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    mode = QUICK if args.quick else FULL
    traces = args.traces or mode.traces
    send_delay = args.send_delay if args.send_delay is not None else mode.send_delay
    plan = Plan(
        probe_seconds=args.probe_seconds or mode.probe,
        step_seconds=args.step_seconds or mode.step,
        fractions=tuple(float(f) for f in (args.steps or mode.steps).split(",")),
        latency_seconds=args.load_seconds or mode.load,
        lag_tolerance=args.lag_tolerance,
        drain_timeout=15.0 if args.quick else 30.0,
        refinements=mode.refinements,
        moves=mode.moves,
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = RESULTS / f"run-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    runs = refinery_runs(args, notes)
    run_collector = not args.no_collector
    if run_collector and not COLLECTOR_BINARY.exists():
        notes.append(f"no Collector at {COLLECTOR_BINARY.relative_to(REPO)}: run `make peers`")
        run_collector = False

    started = time.monotonic()
    print(f"preparing payloads and {args.senders} sender process(es)...", flush=True)
    senders = Senders(args.protocol, args.senders, args.connections, traces)
    sink: SinkProcess | None = None
    results: list[Result] = []
    try:
        payloads = [load_payloads(traces, seed) for seed in senders.seeds]
        spans = sum(p.spans for p in payloads)
        print("measuring the protobuf floor and the sender ceiling...", flush=True)
        floor_seconds = 1.0 if args.quick else 2.0
        floors = [floor.measure(traces, senders.seeds, floor_seconds)]
        the_ceiling = ceiling.measure(senders, args.protocol, 1.0 if args.quick else 3.0)
        sink = SinkProcess()
        settings = Settings(
            protocol=args.protocol,
            sink_port=sink.port,
            send_delay=send_delay,
            trace_timeout=args.trace_timeout,
            compression=args.compression,
            folder=folder,
        )
        bench = Bench(senders, sink, payloads, plan)
        targets: list[tuple[Target, str]] = [
            (
                Refinery(settings, run.rules, run.workers, args.store, front=run.front),
                shown(run.rules),
            )
            for run in runs
        ]
        if run_collector:
            targets.append((Collector(settings), "bench/collector_config.py (same policies)"))
        for number, (target, rules_label) in enumerate(targets):
            if args.wait_quiet:
                wait_quiet(args.wait_quiet)
            print(f"measuring {target.label} with {rules_label}... ", end="", flush=True)
            began = time.monotonic()
            if number:  # this machine's speed drifts: each server gets a floor of its own
                floors.append(floor.measure(traces, senders.seeds, floor_seconds))
            try:
                results.append(bench.run(target, rules_label, reference_rate(results, target)))
                results[-1].floor = floors[-1].spans_per_second
            except RuntimeError as exc:
                notes.append(f"{target.label} ({rules_label}) failed: {exc}")
                target.stop(5)
            print(f"{time.monotonic() - began:.0f} s", flush=True)
    finally:
        senders.close()
        if sink is not None:
            sink.stop()

    total_wire = sum(p.wire_bytes for p in payloads)
    context = Context(
        cpus=os.cpu_count() or 0,
        protocol=args.protocol,
        sender_processes=args.senders,
        connections=args.connections,
        payload_spans=spans,
        payload_requests=sum(len(p.bodies) for p in payloads),
        wire_bytes_per_span=total_wire / spans,
        send_delay=send_delay,
        trace_timeout=args.trace_timeout,
        floor=floors[0],
        floors=[f.spans_per_second for f in floors],
        ceiling=the_ceiling,
        mode=mode.name,
        notes=notes
        + client_bound_notes(results, the_ceiling, args.senders, args.connections)
        + slow_machine_notes(results),
    )
    print()
    print(report.render(results, context))
    path = args.json or folder / "results.json"
    report.write_json(path, results, context)
    print(f"\n{time.monotonic() - started:.0f} s; results: {shown(path.resolve())}")


def reference_rate(results: list[Result], target: Target) -> float | None:
    """For a refinery_py run with more than one worker: the load rate of the one-worker run
    with the same rules, measured before it (see `Bench.run`)."""
    if not isinstance(target, Refinery) or (target.workers or 1) < 2:
        return None
    one = report.one_worker_run(results, Path(target.rules).stem)
    return one.load.step.offered if one is not None and one.load is not None else None


def shown(path: Path) -> str:
    """`path` relative to the repository when it is inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def wait_quiet(patience: float) -> None:
    """Wait (at most `patience` seconds) until other processes leave the machine nearly idle."""
    deadline = time.monotonic() + patience
    while (busy := procstat.foreign_cores(os.getpid(), 1.0)) >= QUIET_CORES:
        if time.monotonic() > deadline:
            print(f"other processes still use {busy:.2f} cores: measuring anyway", flush=True)
            return
        print(f"waiting: other processes use {busy:.2f} cores", flush=True)


def client_bound_notes(
    results: list[Result], limit: ceiling.Ceiling, senders: int, connections: int
) -> list[str]:
    """Say when a figure may be the client's or the machine's limit rather than the server's."""
    notes = []
    cpus = os.cpu_count() or 1
    for result in results:
        failing = result.failing
        if failing is not None and failing.concurrency >= 0.85 * senders * connections:
            notes.append(
                f"{result.label}: CLIENT-BOUND — all {senders * connections} connections were "
                f"busy in the step that failed ({failing.concurrency:.1f} requests in flight "
                "on average): raise --connections"
            )
        probe = result.probe
        if probe is None:
            continue
        if probe.achieved >= 0.8 * limit.spans_per_second or probe.sender_cores >= 0.9 * senders:
            notes.append(
                f"{result.label}: CLIENT-BOUND — the flat-out probe reached "
                f"{probe.achieved:,.0f} spans/s with the senders at {probe.sender_cores:.2f} "
                "cores: add --senders"
            )
        busy = probe.server_cores + probe.sender_cores + probe.sink_cores
        if busy >= 0.9 * cpus:
            notes.append(
                f"{result.label}: the machine was saturated in the probe (server "
                f"{probe.server_cores:.2f} + senders {probe.sender_cores:.2f} + sink "
                f"{probe.sink_cores:.2f} cores of {cpus})"
            )
    return notes


SLOW_FLOOR = 0.9
"""A server whose floor fell below this share of the run's median floor ran on a slowed machine."""


def slow_machine_notes(results: list[Result]) -> list[str]:
    """Say which servers ran while this (shared, drifting) machine was slow: the protobuf floor
    measured just before each server is the run's yardstick of the machine's speed."""
    floors = [result.floor for result in results if result.floor > 0]
    if len(floors) < 2:
        return []
    typical = statistics.median(floors)
    return [
        f"{result.label} ({result.rules}): the protobuf floor measured just before it was "
        f"{result.floor:,.0f} spans/s, {1 - result.floor / typical:.0%} below the run's median "
        f"({typical:,.0f}): the machine was slow then, and this server's figures with it"
        for result in results
        if 0 < result.floor < SLOW_FLOOR * typical
    ]


if __name__ == "__main__":
    main()
