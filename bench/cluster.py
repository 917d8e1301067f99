"""Cluster benchmark: what sampling as one costs per span, and what moves when members change.

    .venv/bin/python -m bench.cluster [--rate 24000] [--seconds 20] [--no-collector] [--no-moves]

At one offered load (OTLP/HTTP from bench/loadgen.py, three sender processes), measured in turn:

1. one node (`--workers 1`): the baseline;
2. three single-worker nodes in a static cluster, each sender sending to its own node, so about
   two thirds of all spans reach a node that does not own them and are forwarded;
3. three single-worker nodes behind one OpenTelemetry Collector with the `load_balancing`
   exporter (routing key traceID) that sends each trace to its owner's per-worker port
   (`listen.otlp_grpc_per_worker`), so nothing is forwarded between nodes;

and prints CPU-seconds per 100k spans for each (refinery_py's processes; the Collector tier's
own CPU apart), and the forwarding cost per forwarded span ((2) − (1) over the spans (2)
forwarded). Then (4): a three-node Redis cluster under load with keep-everything rules, a fourth
node joining and one of the first leaving with SIGTERM, with an auditing sink: the spans lost
(accepted by a node, never exported) and the traces split (decided more than once, or not
whole). Both must be 0. Everything runs on this machine: the senders, sink, Collector and Redis
share the cores with the nodes, so compare the runs with each other, not with other machines.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from bench import procstat, scrape
from bench.audit_sink import AuditSinkProcess
from bench.loadgen import Senders
from bench.sink import SinkProcess
from bench.targets import COLLECTOR_BINARY, REPO, Refinery, Settings, free_port

RESULTS = REPO / "bench" / "results"
KEEP_ALL = REPO / "bench" / "rules" / "keep-all.yaml"
SENDERS = 3


@dataclass
class Run:
    name: str
    spans: float
    """Spans the senders had accepted in the measured window."""
    cpu: float
    """CPU seconds of refinery_py's processes in the window."""
    front_cpu: float = 0.0
    """CPU seconds of the Collector tier in the window (scenario 3)."""
    forwarded: float = 0.0
    rejected_requests: int = 0

    @property
    def cpu_per_100k(self) -> float:
        return self.cpu / max(1.0, self.spans) * 1e5

    @property
    def front_cpu_per_100k(self) -> float:
        return self.front_cpu / max(1.0, self.spans) * 1e5


_STARTED: list[Node] = []
"""Every node this run started: whatever happens, none outlives the benchmark."""


class Node(Refinery):
    """A refinery_py node with a `cluster` section and, optionally, per-worker OTLP ports."""

    def __init__(
        self,
        settings: Settings,
        rules: Path,
        name: str,
        cluster: Mapping[str, object] | None,
        *,
        peer_port: int = 0,
        owned_port: int | None = None,
    ) -> None:
        super().__init__(settings, rules, 1)
        self.name = name
        self.label = name
        self.log_path = settings.folder / f"{name}.log"
        self.cluster = cluster
        self.peer_port = peer_port or free_port()
        self.owned_port = owned_port

    def start(self, timeout: float = 60.0) -> None:
        _STARTED.append(self)  # before it runs: a failed start is cleaned up too
        super().start(timeout)

    def config(self) -> dict[str, object]:
        config = super().config()
        listen = config["listen"]
        assert isinstance(listen, dict)
        listen["peer"] = f"127.0.0.1:{self.peer_port}"
        if self.owned_port is not None:
            listen["otlp_grpc_per_worker"] = f"127.0.0.1:{self.owned_port}"
        if self.cluster is not None:
            config["cluster"] = dict(self.cluster)
        config["logging"] = {"level": "info"}
        return config

    def metric(self, name: str, label: str = "") -> float:
        text = self._metrics()
        return (scrape.total(text, name, label) or 0.0) if text else 0.0


def cpu_of(pids: list[int]) -> float:
    return sum(procstat.tree_usage(pid).cpu_seconds for pid in pids)


def measure(
    name: str,
    senders: Senders,
    nodes: list[Node],
    *,
    rate: float,
    warmup: float,
    seconds: float,
    front: subprocess.Popen[bytes] | None = None,
) -> Run:
    senders.phase(f"{name}-warmup", rate)
    time.sleep(warmup)
    senders.report(f"{name}-warmup")
    pids = [node.pid for node in nodes]
    forwarded = sum(n.metric("refinery_cluster_spans_total", 'direction="sent"') for n in nodes)
    cpu, front_cpu = cpu_of(pids), cpu_of([front.pid]) if front else 0.0
    senders.phase(name, rate)
    time.sleep(seconds)
    stats, _ = senders.report(name)
    cpu = cpu_of(pids) - cpu
    front_cpu = (cpu_of([front.pid]) if front else 0.0) - front_cpu
    forwarded = (
        sum(n.metric("refinery_cluster_spans_total", 'direction="sent"') for n in nodes) - forwarded
    )
    senders.pause()
    return Run(name, stats.accepted_spans, cpu, front_cpu, forwarded, stats.rejected_requests)


def start_all(nodes: list[Node]) -> None:
    for node in nodes:
        node.start()


def stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        node.stop(60)


def stop_counting(node: Node) -> float:
    """SIGTERM `node` and return the spans it had accepted when it stopped serving (its API is
    read until it goes, after its front doors closed)."""
    last = [node.metric("refinery_spans_received_total")]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            text = node._metrics()
            if text is not None:
                last[0] = scrape.total(text, "refinery_spans_received_total") or last[0]
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    node.stop(120)
    done.set()
    poller.join(5)
    return last[0]


def target_each(senders: Senders, ports: list[int]) -> None:
    """Sender process i sends to ports[i % len(ports)] (its own node)."""
    for index, pipe in enumerate(senders.pipes):
        pipe.send(("target", "127.0.0.1", (ports[index % len(ports)],)))
    for pipe in senders.pipes:
        pipe.recv()


def collector_tier(folder: Path, port: int, backends: list[int]) -> subprocess.Popen[bytes]:
    """One Collector with the load_balancing exporter (traceID) in front of `backends`."""
    config = {
        "receivers": {
            "otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}},
        },
        "exporters": {
            "load_balancing": {
                "routing_key": "traceID",
                "protocol": {"otlp": {"tls": {"insecure": True}, "compression": "none"}},
                "resolver": {"static": {"hostnames": [f"127.0.0.1:{p}" for p in backends]}},
            }
        },
        "service": {
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["load_balancing"]}},
        },
    }
    path = folder / "collector-tier.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = (folder / "collector-tier.log").open("ab")
    process = subprocess.Popen(
        [str(COLLECTOR_BINARY), "--config", str(path)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the Collector tier did not start; see {folder / 'collector-tier.log'}")


def moves(args: argparse.Namespace, folder: Path, senders: Senders) -> dict[str, object]:
    """Scenario 4: a join and a leave under load, audited."""
    redis_dir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    socket_path = redis_dir / "redis.sock"
    redis = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(redis_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    audit = AuditSinkProcess()
    settings = Settings("http", audit.port, args.send_delay, args.trace_timeout, "none", folder)
    cluster = {"redis": {"url": f"unix://{socket_path}", "name": "bench", "ttl": "2s"}}
    nodes = [Node(settings, KEEP_ALL, f"moving-{i}", cluster) for i in range(4)]
    try:
        start_all(nodes[:3])
        target_each(senders, [n.http_port for n in nodes[:3]])
        rate = args.moves_rate
        senders.phase("moves", rate)
        time.sleep(args.seconds / 2)
        nodes[3].start()  # joins under load
        target_each(senders, [n.http_port for n in (nodes[3], nodes[1], nodes[2])])
        time.sleep(args.seconds / 2)
        target_each(senders, [n.http_port for n in (nodes[3], nodes[3], nodes[2])])
        time.sleep(1.0)  # requests in flight to it finish
        accepted = stop_counting(nodes[1])  # leaves under load (SIGTERM)
        time.sleep(args.seconds / 2)
        senders.pause()  # finishes the replay in progress: every trace is sent whole
        stats, _ = senders.report("moves")
        accepted += sum(
            n.metric("refinery_spans_received_total") for n in (nodes[0], nodes[2], nodes[3])
        )
        deadline = time.monotonic() + args.trace_timeout + 30
        while audit.spans() < accepted and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(args.send_delay + 2.0)  # anything arriving late or twice would arrive now
        result = audit.audit()
        handed = sum(
            n.metric("refinery_cluster_handoff_traces_total", 'direction="in"')
            for n in (nodes[0], nodes[2], nodes[3])
        )
        return {
            "accepted_spans": int(accepted),
            "exported_spans": result.spans,
            "lost_spans": int(accepted) - result.spans + result.duplicated_spans,
            "split_epochs": dict(collections.Counter(t[12:16].hex() for t in result.split_ids)),
            "traces": result.traces,
            "split_traces": result.split,
            "duplicated_spans": result.duplicated_spans,
            "handed_off_traces": handed,
            "examples": result.examples,
            "offered_rate": rate,
            "failed_requests": stats.failed_requests,
            "refused_requests": stats.rejected_requests,
            "errors": stats.errors,
        }
    finally:
        stop_all(nodes)
        audit.stop()
        redis.terminate()
        redis.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=24000.0, help="offered spans/s")
    parser.add_argument("--moves-rate", type=float, default=12000.0, help="spans/s, scenario 4")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=6.0)
    parser.add_argument("--traces", type=int, default=1000, help="traces per sender payload")
    parser.add_argument("--rules", type=Path, default=REPO / "rules" / "default.yaml")
    parser.add_argument("--send-delay", type=float, default=2.0)
    parser.add_argument("--trace-timeout", type=float, default=10.0)
    parser.add_argument("--no-collector", action="store_true")
    parser.add_argument("--no-moves", action="store_true")
    args = parser.parse_args()
    # SIGTERM (a timeout, a CI job cancelled) unwinds like Ctrl-C: the nodes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    folder = RESULTS / time.strftime("cluster-%Y%m%dT%H%M%S")
    folder.mkdir(parents=True)
    senders = Senders("http", SENDERS, 8, args.traces)
    sink = SinkProcess()
    settings = Settings("http", sink.port, args.send_delay, args.trace_timeout, "none", folder)
    runs: list[Run] = []
    report: dict[str, object] = {}
    try:
        single = Node(settings, args.rules, "single", None)
        start_all([single])
        target_each(senders, [single.http_port])
        timing = {"rate": args.rate, "warmup": args.warmup, "seconds": args.seconds}
        runs.append(measure("one node", senders, [single], **timing))
        stop_all([single])

        ports = [free_port() for _ in range(3)]
        peers = {"peers": [f"127.0.0.1:{p}" for p in ports], "secret": "bench-secret"}
        members = [
            Node(settings, args.rules, f"member-{i}", peers, peer_port=p)
            for i, p in enumerate(ports)
        ]
        start_all(members)
        target_each(senders, [n.http_port for n in members])
        runs.append(measure("3 nodes, forwarding", senders, members, **timing))
        stop_all(members)

        if not args.no_collector:
            owned = [free_port() for _ in range(3)]
            behind = [
                Node(settings, args.rules, f"behind-{i}", None, owned_port=p)
                for i, p in enumerate(owned)
            ]
            start_all(behind)
            front_port = free_port()
            front = collector_tier(folder, front_port, owned)
            try:
                target_each(senders, [front_port])
                runs.append(
                    measure("3 nodes, Collector tier", senders, behind, **timing, front=front)
                )
            finally:
                front.terminate()
                front.wait(30)
                stop_all(behind)
        if not args.no_moves:
            report["moves"] = moves(args, folder, senders)
    finally:
        for node in _STARTED:
            node.stop(5)
        senders.close()
        sink.stop()
    print(render(runs, report))
    (folder / "results.json").write_text(
        json.dumps(
            {
                "runs": [asdict(r) | {"cpu_per_100k": r.cpu_per_100k} for r in runs],
                **report,
                "offered_rate": args.rate,
            },
            indent=2,
        )
    )
    print(f"results: {folder / 'results.json'}", file=sys.stderr)


def render(runs: list[Run], report: dict[str, object]) -> str:
    lines = [
        "| | spans accepted | CPU-s per 100k spans (refinery_py) | front tier CPU-s per 100k "
        "| spans forwarded | requests refused |",
        "|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {run.name} | {run.spans:,.0f} | {run.cpu_per_100k:.2f} | "
        f"{run.front_cpu_per_100k:.2f} | {run.forwarded:,.0f} | {run.rejected_requests} |"
        for run in runs
    )
    if len(runs) >= 2 and runs[1].forwarded:
        extra = runs[1].cpu - runs[0].cpu * runs[1].spans / max(1.0, runs[0].spans)
        lines.append("")
        lines.append(
            f"forwarding cost: {extra / runs[1].forwarded * 1e6:.1f} µs of CPU per forwarded "
            f"span ({extra / max(1e-9, runs[0].cpu) * 100:.0f}% over one node, for "
            f"{runs[1].forwarded / max(1.0, runs[1].spans):.0%} of spans forwarded)"
        )
    moved = report.get("moves")
    if isinstance(moved, dict):
        lines.append("")
        lines.append(
            f"join + leave under load ({moved['offered_rate']:,.0f} spans/s offered): "
            f"{moved['accepted_spans']:,} spans accepted, {moved['exported_spans']:,} exported, "
            f"lost {moved['lost_spans']}, traces split {moved['split_traces']} of "
            f"{moved['traces']:,}, duplicated spans {moved['duplicated_spans']}, traces handed "
            f"off {moved['handed_off_traces']:,.0f}"
        )
        lines.extend(f"  split: {example}" for example in moved.get("examples", []) or [])
    return "\n".join(lines)


if __name__ == "__main__":
    main()
