"""End-to-end throughput of one `refinery-py serve` process, OTLP/HTTP in, OTLP/gRPC out.

    .venv/bin/python -m bench.e2e_quick [--traces 6000] [--senders 1]

Starts a sink (bench/sink.py), the server with rules/default.yaml exporting to it, and sender
processes that post pre-built protobuf requests (bench/traffic.py) over keep-alive connections as
fast as the server answers. Reports the sustained ingest rate (spans acknowledged per second,
rejections counted) and the rate including the tail until every trace is decided and exported.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.traffic import TrafficShape, generate_requests

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sender(
    port: int,
    traces: int,
    seed: int,
    ready: threading.Barrier,
    result: mp.Queue[tuple[float, int]],
) -> None:
    bodies = list(generate_requests(traces, TrafficShape(seed=seed)))
    connection = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/x-protobuf"}
    ready.wait()
    started = time.perf_counter()
    rejected = 0
    for body in bodies:
        while True:
            connection.request("POST", "/v1/traces", body, headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                break
            rejected += 1
            time.sleep(float(response.getheader("Retry-After") or 1))
    result.put((time.perf_counter() - started, rejected))


def metric(api: int, name: str, label: str = "") -> float:
    """Sum of a metric's samples whose labels contain `label` (e.g. 'decision="kept"')."""
    with urllib.request.urlopen(f"http://127.0.0.1:{api}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " ")) and label in line
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=6000, help="traces per sender")
    parser.add_argument("--senders", type=int, default=1)
    args = parser.parse_args()
    grpc_port, http_port, api_port, sink_port = (free_port() for _ in range(4))
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(
            f"listen:\n  otlp_grpc: 127.0.0.1:{grpc_port}\n  otlp_http: 127.0.0.1:{http_port}\n"
            f"  api: 127.0.0.1:{api_port}\n"
            f"rules_file: {REPO / 'rules' / 'default.yaml'}\n"
            "traces:\n  send_delay: 500ms\n  trace_timeout: 10s\n"
            f"export:\n  otlp:\n    endpoint: 127.0.0.1:{sink_port}\n"
            "store:\n  path: null\n"
        )
        sink = subprocess.Popen(
            [sys.executable, "-m", "bench.sink", str(sink_port)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert sink.stdout is not None
        sink.stdout.readline()
        server = subprocess.Popen(
            [sys.executable, "-m", "refinery_py", "serve", "--config", str(config)],
            cwd=REPO,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    metric(api_port, "refinery_spans_received_total")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            ready = mp.Barrier(args.senders + 1)
            results: mp.Queue[tuple[float, int]] = mp.Queue()
            processes = [
                mp.Process(target=sender, args=(http_port, args.traces, 100 + i, ready, results))
                for i in range(args.senders)
            ]
            for process in processes:
                process.start()
            ready.wait()
            started = time.perf_counter()
            outcomes = [results.get() for _ in processes]
            sent_seconds = max(seconds for seconds, _ in outcomes)
            received = metric(api_port, "refinery_spans_received_total")
            while metric(api_port, "refinery_traces_waiting") > 0:
                time.sleep(0.05)
            kept = metric(api_port, "refinery_spans_decided_total", 'decision="kept"')
            while metric(api_port, "refinery_export_spans_total") < kept:
                time.sleep(0.05)
            total_seconds = time.perf_counter() - started
            for process in processes:
                process.join()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
            sink.send_signal(signal.SIGTERM)
            sink_report = sink.communicate(timeout=30)[0].strip()
    rejected = sum(r for _, r in outcomes)
    print(f"machine: {os.cpu_count()} CPUs; senders: {args.senders} (OTLP/HTTP protobuf)")
    print(f"spans received:            {received:,.0f} ({rejected} requests refused with 429)")
    print(f"ingest rate:               {received / sent_seconds / 1000:,.0f} k spans/s")
    print(f"with decision + export:    {received / total_seconds / 1000:,.0f} k spans/s")
    print(f"kept and exported:         {kept:,.0f} spans; sink: {sink_report}")


if __name__ == "__main__":
    main()
