"""An OTLP/gRPC sink for benchmarks: accepts every export, counts spans, times root spans.

    python -m bench.sink PORT     # standalone: prints `ready`, then counts until SIGTERM

Each request is parsed (upb) — the sink only sees kept traffic, a tenth or so of what the server
under test receives — to count spans exactly and to note, for every root span (no parent), when
its trace first reached the sink (CLOCK_MONOTONIC, comparable across processes on one machine),
and which traces had an error span (status ERROR) reach it: a trace whose error was kept without
its root (rescued after the trace was dropped) is kept in part.
The benchmark runner starts it as a process (`sink_main`) and asks over a pipe for the counts and
for the root receive times, which it joins with the senders' root acknowledgements to get the
decision latency. gzip-compressed exports are inflated by grpc itself. `down()` makes it answer
every export UNAVAILABLE until `up()` (a backend outage, for bench/soak.py).
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import threading
import time
from concurrent import futures
from multiprocessing.connection import Connection

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
_ERROR = 2
"""Status.StatusCode STATUS_CODE_ERROR."""


class Sink:
    """Counts what arrives; remembers when each root span's trace ID first arrived."""

    def __init__(self) -> None:
        self.requests = 0
        self.spans = 0
        self.bytes = 0
        self.roots: dict[bytes, float] = {}
        self.errored: set[bytes] = set()
        self.down = False
        self._lock = threading.Lock()

    def export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        if self.down:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the sink is down (a simulated outage)")
        now = time.monotonic()
        spans = 0
        roots: list[bytes] = []
        errored: list[bytes] = []
        for resource_spans in ExportTraceServiceRequest.FromString(request).resource_spans:
            for scope_spans in resource_spans.scope_spans:
                spans += len(scope_spans.spans)
                roots.extend(s.trace_id for s in scope_spans.spans if not s.parent_span_id)
                errored.extend(s.trace_id for s in scope_spans.spans if s.status.code == _ERROR)
        with self._lock:
            self.requests += 1
            self.spans += spans
            self.bytes += len(request)
            for trace_id in roots:
                self.roots.setdefault(trace_id, now)
            self.errored.update(errored)
        return b""  # an empty ExportTraceServiceResponse: full success

    def counts(self) -> tuple[int, int, int]:
        with self._lock:
            return self.requests, self.spans, self.bytes

    def take_roots(self) -> dict[bytes, float]:
        with self._lock:
            roots, self.roots = self.roots, {}
            return roots

    def take_errored(self) -> set[bytes]:
        with self._lock:
            errored, self.errored = self.errored, set()
            return errored


def serve(port: int) -> tuple[grpc.Server, Sink, int]:
    """Start a sink on 127.0.0.1:`port` (0: any free port); returns it and the bound port."""
    sink = Sink()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    handler = grpc.method_handlers_generic_handler(
        _SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(sink.export)}
    )
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, sink, bound


def sink_main(port: int, conn: Connection) -> None:
    """The sink as the runner's child process: answers `counts`, `roots`, `errored` and
    `stop`."""
    server, sink, bound = serve(port)
    conn.send(("ready", bound))
    while True:
        command = conn.recv()
        if command == "counts":
            conn.send(sink.counts())
        elif command == "roots":
            conn.send(sink.take_roots())
        elif command == "errored":
            conn.send(sink.take_errored())
        elif command in ("down", "up"):
            sink.down = command == "down"
            conn.send(sink.down)
        elif command == "stop":
            server.stop(grace=None)
            conn.send(sink.counts())
            return


class SinkProcess:
    """The runner's handle on a sink running in its own process."""

    def __init__(self) -> None:
        context = mp.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(target=sink_main, args=(0, child), daemon=True)
        self.process.start()
        _, self.port = self._pipe.recv()

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def counts(self) -> tuple[int, int, int]:
        """(requests, spans, bytes) received so far."""
        self._pipe.send("counts")
        counts: tuple[int, int, int] = self._pipe.recv()
        return counts

    def take_roots(self) -> dict[bytes, float]:
        """Root trace ID → first arrival, for roots that arrived since the last call."""
        self._pipe.send("roots")
        roots: dict[bytes, float] = self._pipe.recv()
        return roots

    def take_errored(self) -> set[bytes]:
        """Trace IDs of the error spans that arrived since the last call."""
        self._pipe.send("errored")
        errored: set[bytes] = self._pipe.recv()
        return errored

    def down(self) -> None:
        """Answer every export UNAVAILABLE from now on (until `up`)."""
        self._pipe.send("down")
        self._pipe.recv()

    def up(self) -> None:
        self._pipe.send("up")
        self._pipe.recv()

    def stop(self) -> None:
        if self.process.is_alive():
            self._pipe.send("stop")
            self._pipe.recv()
        self.process.join(5)


def main() -> None:
    server, sink, _ = serve(int(sys.argv[1]))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    server.stop(grace=None)
    requests, spans, size = sink.counts()
    print(f"requests={requests} spans={spans} bytes={size}", flush=True)


if __name__ == "__main__":
    main()
