"""The servers under test: `refinery-py serve` and the OpenTelemetry Collector, started alike.

Each target writes its config into the run's folder, starts its process (logs beside the
config), waits until it answers, and tells the runner where to send OTLP, which processes to
measure, and what its own metrics say about the spans it holds (`Backlog`). Both export OTLP/gRPC
to the same sink.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench import scrape
from bench.collector_config import collector_config

REPO = Path(__file__).resolve().parents[1]
COLLECTOR_BINARY = REPO / "bench" / "peers" / "bin" / "otelcol-bench"
COLLECTOR_VERSION = "0.161.0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports (a node's per-worker ports: port + i)."""
    for _ in range(100):
        first = free_port()
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"found no {count} consecutive free ports")


def serve_supports_workers() -> bool:
    """Whether this checkout's `refinery-py serve` has a `--workers` option."""
    result = subprocess.run(
        [sys.executable, "-m", "refinery_py", "serve", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return "--workers" in result.stdout


@dataclass(frozen=True)
class Backlog:
    """What a server holds, by its own metrics (None: it does not say)."""

    traces_waiting: float | None
    spans_waiting: float | None
    buffer_bytes: float | None
    export_queued: float | None
    drained: bool


@dataclass
class Settings:
    """What every target shares in one run."""

    protocol: str
    sink_port: int
    send_delay: float
    trace_timeout: float
    compression: str
    folder: Path


class Target:
    """A server process under test."""

    name = ""
    label = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.log_path = settings.folder / f"{self.name}.log"

    @property
    def ingest_port(self) -> int:
        return self.http_port if self.settings.protocol == "http" else self.grpc_port

    @property
    def ingest_ports(self) -> tuple[int, ...]:
        """Where the senders send: one port, or several they split each request over by
        trace ID (a trace-ID-routing front)."""
        return (self.ingest_port,)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def nominal_delay(self) -> float:
        """Root arrival → export when nothing is behind: the wait, its timer grain, batching."""
        raise NotImplementedError

    settle_seconds = 0.4
    """How long after its metrics show nothing waiting its last kept spans may still be in an
    export batch (batch timeout + one export)."""

    def ready(self) -> bool:
        raise NotImplementedError

    def backlog(self) -> Backlog:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(5)
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.label} did not start; log {self.log_path}:\n{tail}")
            time.sleep(0.1)

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def _metrics(self) -> str | None:
        try:
            return scrape.fetch(f"http://127.0.0.1:{self.metrics_port}/metrics")
        except OSError:
            return None


class Refinery(Target):
    """`refinery-py serve` with a generated config: rules, export to the sink, no store.

    With `front`, the senders play a trace-ID-routing front (the Collector's load_balancing
    exporter): each request is split by trace ID over the workers' own ports
    (`listen.otlp_*_per_worker`), so every span reaches its worker directly and none is forwarded.
    """

    def __init__(
        self,
        settings: Settings,
        rules: Path,
        workers: int | None,
        store: bool = False,
        *,
        front: bool = False,
        overrides: Mapping[str, Mapping[str, object]] | None = None,
    ) -> None:
        if front and not workers:
            raise ValueError("a trace-ID-routing front needs an explicit worker count")
        self.overrides = overrides or {}
        """Config keys to set, by section (`{"traces": {"refusal_wait": "0s"}}`)."""
        self.rules = rules
        self.workers = workers
        self.front = front
        self.name = (
            f"refinery-{rules.stem}"
            + (f"-w{workers}" if workers else "")
            + ("-front" if front else "")
        )
        self.label = (
            "refinery-py" + (f" ×{workers}" if workers else "") + (" front" if front else "")
        )
        super().__init__(settings)
        self.store = store
        count = workers if front and workers else 1
        self.grpc_worker_port, self.http_worker_port = free_port_run(count), free_port_run(count)

    @property
    def ingest_ports(self) -> tuple[int, ...]:
        if not self.front or not self.workers:
            return (self.ingest_port,)
        first = self.http_worker_port if self.settings.protocol == "http" else self.grpc_worker_port
        return tuple(range(first, first + self.workers))

    def config(self) -> dict[str, object]:
        config = self._base_config()
        for section, values in self.overrides.items():
            base = config.get(section)
            config[section] = {**(base if isinstance(base, dict) else {}), **values}
        return config

    def _base_config(self) -> dict[str, object]:
        s = self.settings
        listen = {
            "otlp_grpc": f"127.0.0.1:{self.grpc_port}",
            "otlp_http": f"127.0.0.1:{self.http_port}",
            "api": f"127.0.0.1:{self.metrics_port}",
        }
        if self.front:
            listen["otlp_grpc_per_worker"] = f"127.0.0.1:{self.grpc_worker_port}"
            listen["otlp_http_per_worker"] = f"127.0.0.1:{self.http_worker_port}"
        return {
            "listen": listen,
            "rules_file": str(self.rules.resolve()),
            "traces": {
                "send_delay": f"{int(s.send_delay * 1000)}ms",
                "trace_timeout": f"{int(s.trace_timeout * 1000)}ms",
                "max_memory": "4GiB",
            },
            "export": {
                "otlp": {
                    "endpoint": f"127.0.0.1:{s.sink_port}",
                    "protocol": "grpc",
                    "compression": s.compression,
                }
            },
            "store": {"path": str(s.folder / f"{self.name}.db") if self.store else None},
            "logging": {"level": "warning"},
        }

    def command(self) -> list[str]:
        path = self.settings.folder / f"{self.name}.yaml"
        path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        command = [sys.executable, "-m", "refinery_py", "serve", "--config", str(path)]
        if self.workers is not None:
            command += ["--workers", str(self.workers)]
        return command

    def nominal_delay(self) -> float:
        # send_delay, then the 100 ms decision tick and the exporter's 200 ms batch_timeout.
        return self.settings.send_delay + 0.3

    def ready(self) -> bool:
        url = f"http://127.0.0.1:{self.metrics_port}/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def backlog(self) -> Backlog:
        text = self._metrics()
        if text is None:
            return Backlog(None, None, None, None, drained=False)
        spans = scrape.total(text, "refinery_spans_waiting")
        queued = scrape.total(text, "refinery_export_queue_spans")
        return Backlog(
            traces_waiting=scrape.total(text, "refinery_traces_waiting"),
            spans_waiting=spans,
            buffer_bytes=scrape.total(text, "refinery_buffer_bytes"),
            export_queued=queued,
            drained=not spans and not queued,
        )


class Collector(Target):
    """The Collector built by `make peers`, with `collector_config`'s pipeline."""

    name = "otelcol"
    label = f"otelcol {COLLECTOR_VERSION}"
    settle_seconds = 0.6  # the batch processor's 200 ms timeout, then the export

    def command(self) -> list[str]:
        s = self.settings
        config = collector_config(
            grpc_port=self.grpc_port,
            http_port=self.http_port,
            metrics_port=self.metrics_port,
            sink_port=s.sink_port,
            send_delay=s.send_delay,
            trace_timeout=s.trace_timeout,
            compression=s.compression,
        )
        path = s.folder / "otelcol.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return [str(COLLECTOR_BINARY), "--config", str(path)]

    def nominal_delay(self) -> float:
        # decision_wait_after_root_received in whole seconds, then up to one 1 s timer tick and
        # the batch processor's 200 ms timeout.
        return max(1, round(self.settings.send_delay)) + 1.2

    def ready(self) -> bool:
        if self._metrics() is None:
            return False
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.ingest_port), timeout=1),
        ):
            return True
        return False

    def backlog(self) -> Backlog:
        text = self._metrics()
        if text is None:
            return Backlog(None, None, None, None, drained=False)
        received = scrape.total(text, "otelcol_processor_tail_sampling_new_trace_id_received")
        decided = scrape.total(text, "otelcol_processor_tail_sampling_global_count_traces_sampled")
        queued = (scrape.total(text, "otelcol_exporter_queue_size") or 0) + (
            scrape.total(text, "otelcol_exporter_in_flight_requests") or 0
        )
        waiting = max(0.0, (received or 0) - (decided or 0))
        return Backlog(
            traces_waiting=waiting,
            spans_waiting=None,
            buffer_bytes=None,
            export_queued=queued,
            drained=not waiting and not queued,
        )

    def dropped_too_early(self) -> float:
        text = self._metrics() or ""
        name = "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early"
        return scrape.total(text, name) or 0.0
