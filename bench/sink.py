"""A minimal OTLP/gRPC sink for benchmarks: accepts, counts spans cheaply, answers OK.

    python -m bench.sink PORT

Counts spans with a substring count rather than a parse, so it stays cheap next to the server
under test. Prints `spans=N requests=M` to stdout on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures

import grpc

_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class Counter:
    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def export(self, request: bytes, _: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.requests += 1
            self.bytes += len(request)
        return b""


def main() -> None:
    port = int(sys.argv[1])
    counter = Counter()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    handler = grpc.method_handlers_generic_handler(
        _SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(counter.export)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    server.stop(grace=None)
    print(f"requests={counter.requests} bytes={counter.bytes}", flush=True)


if __name__ == "__main__":
    main()
