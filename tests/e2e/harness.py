"""Real processes and real servers for end-to-end tests.

`RecordingBackend` is an OTLP/gRPC server (a thread-pool grpc server, so synchronous tests can use
it) that keeps every request it receives. `RefineryProcess` runs `python -m refinery_py serve` as a
child process on ports chosen by the OS and reads them back from its start-up log lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the backend received it, with its resource's attributes."""

    span: Span
    resource: dict[str, Any]
    scope: str

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return {a.key: _value(a.value) for a in self.span.attributes}


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class RecordingBackend:
    """An OTLP/gRPC backend on 127.0.0.1 that records what it is sent (over TLS with
    `credentials`)."""

    def __init__(
        self,
        max_message_bytes: int = 4 << 20,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self._lock = threading.Lock()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[("grpc.max_receive_message_length", max_message_bytes)],
        )
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self._export,
                    request_deserializer=ExportTraceServiceRequest.FromString,
                    response_serializer=ExportTraceServiceResponse.SerializeToString,
                )
            },
        )
        self._server.add_generic_rpc_handlers((handler,))
        if credentials is not None:
            self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        else:
            self.port = self._server.add_insecure_port("127.0.0.1:0")

    down = False
    """While True, every export is answered UNAVAILABLE (a backend outage)."""

    def _export(
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        if self.down:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the backend is down for the test")
        with self._lock:
            self.requests.append(request)
        return ExportTraceServiceResponse()

    def __enter__(self) -> RecordingBackend:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(grace=None)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            requests = list(self.requests)
        return [
            ReceivedSpan(
                span,
                {a.key: _value(a.value) for a in rs.resource.attributes},
                ss.scope.name,
            )
            for request in requests
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def by_trace(self) -> dict[str, list[ReceivedSpan]]:
        grouped: dict[str, list[ReceivedSpan]] = {}
        for received in self.spans():
            grouped.setdefault(received.trace_id, []).append(received)
        return grouped


_LIVE: list[RefineryProcess] = []
"""Nodes running now: a wait that times out shows their logs and metrics."""


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll until `condition()` holds; fail with `what` after `timeout` seconds, showing the log
    and the metrics of every node the test is running."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            dumps = "\n".join(node.dump() for node in list(_LIVE))
            raise AssertionError(f"timed out waiting for {what or condition}\n{dumps}")
        time.sleep(0.05)


_LISTENING = re.compile(
    r"(listening for OTLP/gRPC|listening for OTLP/HTTP|serving the API"
    r"|listening for cluster peers) on (\S+)"
)
_ADVERTISED = re.compile(r"advertised as (\S+)\)")


class RefineryProcess:
    """`refinery-py serve` in a child process, with its log captured."""

    def __init__(
        self,
        config: Path,
        rules: Path | None = None,
        cwd: Path | None = None,
        extra_args: list[str] | None = None,
        *,
        workers: int = 1,
        api_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.api_tls = api_tls
        """How to reach an API that speaks TLS (None: plain HTTP)."""
        command = [sys.executable, "-m", "refinery_py", "serve", "--config", str(config)]
        if rules is not None:
            command += ["--rules", str(rules)]
        extra = list(extra_args or [])
        if "--workers" not in extra:
            # Pinned: the default (one per CPU) would make a test depend on the machine.
            extra += ["--workers", str(workers)]
        command += extra
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command,
            cwd=cwd or config.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its worker processes too can be killed as one group
        )
        self.log: list[str] = []
        self.addresses: dict[str, str] = {}
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        _LIVE.append(self)
        try:
            wait_until(
                lambda: len(self.addresses) >= 3 or self.process.poll() is not None, 30, "start"
            )
        except AssertionError:
            self.__exit__()
            raise
        if self.process.poll() is not None:
            self.__exit__()
            raise RuntimeError("refinery-py serve exited:\n" + "".join(self.log))

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            match = _LISTENING.search(line)
            if match:
                self.addresses[match.group(1)] = match.group(2).rstrip(",")
            advertised = _ADVERTISED.search(line)
            if advertised:
                self.addresses["advertised"] = advertised.group(1)

    @property
    def grpc_endpoint(self) -> str:
        return self.addresses["listening for OTLP/gRPC"]

    @property
    def http_endpoint(self) -> str:
        return "http://" + self.addresses["listening for OTLP/HTTP"] + "/v1/traces"

    @property
    def api(self) -> str:
        scheme = "https" if self.api_tls is not None else "http"
        return f"{scheme}://" + self.addresses["serving the API"]

    @property
    def peer(self) -> str:
        """The node's name in its cluster (its advertised peer address)."""
        return self.addresses["advertised"]

    def dump(self) -> str:
        """The node's log (its end) and its metrics, for a failing test's report."""
        try:
            _, metrics = self.get("/metrics")
            text = metrics.decode()
        except OSError as exc:
            text = f"(metrics unavailable: {exc})"
        wanted = [line for line in text.splitlines() if line.startswith("refinery_")]
        return (
            f"---- node {self.addresses.get('serving the API', '?')} log (last 80 lines) ----\n"
            + "".join(self.log[-80:])
            + "---- its refinery_ metrics ----\n"
            + "\n".join(wanted)
        )

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                self.api + path, timeout=10, context=self.api_tls
            ) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples matching `labels` (0 when absent)."""
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{key}="{value}"' in line for key, value in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code; a shutdown that overruns `timeout` fails with the log
        (which names each shutdown phase and how long it took)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log = "".join(self.log[-120:])
            raise AssertionError(f"still shutting down after {timeout:.0f} s\n{log}") from None
        self._reader.join(timeout=5)
        return code

    def __enter__(self) -> RefineryProcess:
        return self

    def __exit__(self, *_: object) -> None:
        if self in _LIVE:
            _LIVE.remove(self)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._reader.join(timeout=10)  # ends once every process holding the pipe is gone
        if self.process.stderr is not None:
            self.process.stderr.close()


_EXPORT_DEFAULTS = {"protocol": "grpc", "batch_timeout": "50ms", "retry_initial_interval": "100ms"}


def write_config(
    directory: Path,
    backend: RecordingBackend | None,
    *,
    export: Mapping[str, str] | None = None,
    **traces: str,
) -> Path:
    """A config file listening on OS-chosen ports, exporting to `backend` (`export`: keys of
    `export.otlp` to set beside, or instead of, the defaults here)."""
    lines = [
        "listen:",
        "  otlp_grpc: 127.0.0.1:0",
        "  otlp_http: 127.0.0.1:0",
        "  api: 127.0.0.1:0",
        "traces:",
        f"  send_delay: {traces.get('send_delay', '200ms')}",
        f"  trace_timeout: {traces.get('trace_timeout', '5s')}",
        "store:",
        "  path: null",
    ]
    if backend is not None:
        settings = {**_EXPORT_DEFAULTS, **(export or {})}
        lines += ["export:", "  otlp:", f"    endpoint: {backend.endpoint}"]
        lines += [f"    {key}: {value}" for key, value in settings.items()]
    path = directory / "refinery.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def spans_of(grouped: dict[str, list[ReceivedSpan]], trace_id: str) -> Iterator[ReceivedSpan]:
    yield from grouped.get(trace_id, [])
