"""CPU per span of refinery_py configurations at one load rate, measured in alternation.

    .venv/bin/python -m bench.equal_load --rate 90000 [--servers 1,2front,2] [--rules FILE ...]
        [--rounds 3] [--seconds 20] [--warm 8] [--load-cpus 1 --server-cpus 0,1]

The full benchmark (bench.run) measures each configuration once per run, each at its own
sustained rate; on a machine whose speed drifts by ±20% from one minute to the next, one
measurement cannot tell a 10% difference. This tool answers the question "how much more CPU per
span does configuration B take than A at the same load?" the way that can: every configuration
runs at the same offered rate on a fresh server, in turn (A B C A B C ...), so slow and fast
spells of the machine fall on all of them, and it prints every measurement, each
configuration's median and the median's ratio to the first configuration's.

`--servers` names the configurations: `N` is `serve --workers N` (N > 1 forwards spans between
the workers), `Nfront` is N workers behind the senders' trace-ID-routing front (see bench.run
--front); either with `@RATE` is offered RATE spans/s instead of `--rate` (`1@45000`: one worker
at the load each of two carries at 90k). `--load-cpus` keeps the senders, the sink and this
process on those CPUs, and `--server-cpus` pins each server worker to one of those
(bench/placement.py says why).

CPU is the server's whole process tree, from /proc, over the measured phase; a measurement
where the server refused requests did not hold the rate, and is marked.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import placement, procstat
from bench.loadgen import Senders
from bench.sink import SinkProcess
from bench.targets import REPO, Refinery, Settings

RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class Server:
    """One configuration: a worker count, forwarding between them or behind a front, and the
    rate it is offered when that is not the run's `--rate`."""

    workers: int
    front: bool = False
    rate: float | None = None

    @property
    def label(self) -> str:
        label = f"×{self.workers}" + (" front" if self.front else "")
        return label if self.rate is None else f"{label} @{self.rate / 1000:g}k"

    @classmethod
    def parse(cls, text: str) -> Server:
        spec, at, rate_text = text.strip().partition("@")
        count, front, rest = spec.partition("front")
        example = "(e.g. 1, 2, 2front, 1@45000)"
        if not count.isdigit() or int(count) < 1 or rest:
            raise ValueError(f"not a server configuration: {text!r} {example}")
        if front and int(count) < 2:
            raise ValueError(f"{text!r}: a front needs at least 2 workers")
        rate = None
        if at:
            try:
                rate = float(rate_text)
            except ValueError:
                rate = -1.0
            if not rate > 0:
                raise ValueError(f"{text!r}: the rate after @ must be spans/s above 0 {example}")
        return cls(int(count), bool(front), rate)


@dataclass(frozen=True)
class Measurement:
    rules: str
    server: str
    round: int
    cpu_per_100k: float
    """CPU-seconds of the server's process tree per 100,000 accepted spans."""
    spans_per_second: float
    rejected_requests: int
    switches_per_second: float
    """Context switches of the server's processes (voluntary and not) per second."""

    @property
    def held(self) -> bool:
        return self.rejected_requests == 0


def _switches(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return sum(int(line.split()[1]) for line in text.splitlines() if "ctxt_switches:" in line)


def measure(
    senders: Senders,
    settings: Settings,
    rules: Path,
    server: Server,
    *,
    rate: float,
    warm: float,
    seconds: float,
    server_cpus: tuple[int, ...] | None,
) -> tuple[float, float, int, float]:
    """(CPU-s per 100k spans, accepted spans/s, refused requests, context switches/s) of a fresh
    server held at `rate`: `warm` seconds unmeasured, then `seconds` measured."""
    node = Refinery(settings, rules, server.workers, front=server.front)
    node.start()
    try:
        if server_cpus is not None:
            placement.place_server(node.pid, server_cpus)
        senders.target("127.0.0.1", *node.ingest_ports)
        senders.phase("warm", rate)
        time.sleep(warm)
        senders.report("warm")
        pids = procstat.descendants(node.pid)
        cpu, switches = procstat.tree_usage(node.pid).cpu_seconds, sum(map(_switches, pids))
        senders.phase("measured", rate)
        time.sleep(seconds)
        stats, _ = senders.report("measured")
        cpu = procstat.tree_usage(node.pid).cpu_seconds - cpu
        switches = sum(map(_switches, pids)) - switches
    finally:
        senders.pause()
        node.stop(60)
    spans = max(1, stats.accepted_spans)
    return (
        cpu / spans * 1e5,
        stats.spans_per_second,
        stats.rejected_requests,
        switches / stats.seconds,
    )


def summary(measurements: list[Measurement]) -> list[str]:
    """Per rules file: each configuration's figures by round, median, and median's ratio to the
    first configuration's (and the median of the per-round ratios, which cancels slow rounds)."""
    lines: list[str] = []
    for rules in dict.fromkeys(m.rules for m in measurements):
        mine = [m for m in measurements if m.rules == rules]
        servers = list(dict.fromkeys(m.server for m in mine))
        rounds = sorted({m.round for m in mine})
        lines.append(f"{rules}: CPU-s per 100k spans (refused requests: a rate not held)")
        by = {(m.server, m.round): m for m in mine}
        rows: list[tuple[str, list[str]]] = [("round", list(servers))]
        for number in rounds:
            cells = []
            for server in servers:
                m = by.get((server, number))
                cells.append(
                    "—"
                    if m is None
                    else f"{m.cpu_per_100k:.3f}"
                    + ("" if m.held else f" (refused {m.rejected_requests})")
                )
            rows.append((str(number), cells))
        medians = {
            s: statistics.median(m.cpu_per_100k for m in mine if m.server == s) for s in servers
        }
        first = servers[0]
        cells = [
            f"{medians[s]:.3f}"
            + (f" ({medians[s] / medians[first] - 1:+.0%})" if s != first else "")
            for s in servers
        ]
        rows.append(("median", cells))
        # Wide enough for the widest cell and a space: a marked cell must not run into the next.
        width = max(16, 2 + max(len(c) for _, row in rows for c in row))
        lines.extend(f"{label:<11}" + "".join(f"{c:>{width}}" for c in row) for label, row in rows)
        paired = []
        for server in servers[1:]:
            ratios = [
                by[(server, n)].cpu_per_100k / by[(first, n)].cpu_per_100k
                for n in rounds
                if (server, n) in by and (first, n) in by
            ]
            if ratios:
                paired.append(f"{server} {statistics.median(ratios) - 1:+.0%}")
        if paired:
            lines.append(f"per-round ratio to {first}, median: " + ", ".join(paired))
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--rate", type=float, required=True, help="offered spans/s, the same for every server")
    add("--servers", default="1,2front,2", help="configurations, in order (default: 1,2front,2)")
    add(
        "--rules", type=Path, action="append", help="rules file (repeatable; default: default.yaml)"
    )
    add("--rounds", type=int, default=3)
    add("--seconds", type=float, default=20.0, help="measured seconds per server")
    add("--warm", type=float, default=8.0, help="warm-up seconds per server, not measured")
    add("--senders", type=int, default=2, help="sender processes")
    add("--connections", type=int, default=16, help="connections per sender process")
    add("--traces", type=int, default=1000, help="traces per sender's payload set")
    add("--protocol", choices=("http", "grpc"), default="http")
    add("--send-delay", type=float, default=2.0)
    add("--load-cpus", type=placement.parse_cpus, help="CPUs of the senders and the sink")
    add("--server-cpus", type=placement.parse_cpus, help="CPUs of the server, one per worker")
    add("--json", type=Path, help="also write the measurements here")
    add("--logs", type=Path, help="servers' configs and logs (default: bench/results/equal-*)")
    args = parser.parse_args(argv)
    args.servers = [Server.parse(s) for s in args.servers.split(",")]
    args.rules = [r.resolve() for r in args.rules or [REPO / "rules" / "default.yaml"]]
    for rules in args.rules:
        if not rules.is_file():
            parser.error(f"no rules file at {rules}")
    return args


def main(argv: list[str] | None = None) -> list[Measurement]:
    args = parse_args(argv)
    if args.load_cpus is not None:
        # Before the senders and the sink start: they inherit it (and so does each server,
        # until it is placed).
        os.sched_setaffinity(0, args.load_cpus)
    folder = args.logs or RESULTS / f"equal-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    senders = Senders(args.protocol, args.senders, args.connections, args.traces)
    sink = SinkProcess()
    settings = Settings(args.protocol, sink.port, args.send_delay, 10.0, "none", folder)
    measurements: list[Measurement] = []
    try:
        for number in range(1, args.rounds + 1):
            for rules in args.rules:
                for server in args.servers:
                    cpu, rate, refused, switches = measure(
                        senders,
                        settings,
                        rules,
                        server,
                        rate=server.rate or args.rate,
                        warm=args.warm,
                        seconds=args.seconds,
                        server_cpus=args.server_cpus,
                    )
                    m = Measurement(rules.stem, server.label, number, cpu, rate, refused, switches)
                    measurements.append(m)
                    print(
                        f"round {number} {rules.stem} {server.label}: {cpu:.3f} CPU-s per 100k "
                        f"spans at {rate:,.0f} spans/s, {switches:,.0f} context switches/s"
                        + ("" if m.held else f", REFUSED {refused} requests"),
                        flush=True,
                    )
    finally:
        senders.close()
        sink.stop()
    print()
    print("\n".join(summary(measurements)))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(m) for m in measurements], indent=1))
    return measurements


if __name__ == "__main__":
    main()
