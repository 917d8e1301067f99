"""The senders' own ceiling: the same senders, flat out, against a server that does nothing.

The trivial server reads each OTLP request and answers 200 (HTTP, raw sockets, a thread per
connection) or OK (gRPC, a generic grpcio handler) without parsing it. The spans/s the senders
reach against it bound what they can offer any real server, and their CPU use there says what
they take from the machine; the runner prints both, and calls a result client-bound when the
senders were near their ceiling or out of CPU.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import socket
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from multiprocessing.connection import Connection

from bench import procstat
from bench.loadgen import Senders

_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"


def _answer_http(conn: socket.socket) -> None:
    sink = bytearray(1 << 20)
    buffer = b""
    with conn:
        while True:
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, buffer = buffer[:end].lower(), buffer[end + 4 :]
            length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            remaining = length - len(buffer)
            buffer = buffer[length:] if remaining <= 0 else b""
            while remaining > 0:
                got = conn.recv_into(sink, min(remaining, len(sink)))
                if not got:
                    return
                remaining -= got
            conn.sendall(_RESPONSE)


def trivial_server_main(protocol: str, conn: Connection) -> None:
    """A do-nothing OTLP server process; sends its port, serves until the pipe closes."""
    if protocol == "http":
        listener = socket.create_server(("127.0.0.1", 0))
        conn.send(listener.getsockname()[1])

        def accept() -> None:
            while True:
                client, _ = listener.accept()
                threading.Thread(target=_answer_http, args=(client,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
    else:
        import grpc

        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8),
            options=[("grpc.max_receive_message_length", 64 << 20)],
        )
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(lambda request, context: b"")},
        )
        server.add_generic_rpc_handlers((handler,))
        conn.send(server.add_insecure_port("127.0.0.1:0"))
        server.start()
    with contextlib.suppress(EOFError):
        conn.recv()


@dataclass(frozen=True)
class Ceiling:
    spans_per_second: float
    sender_cores: float
    """CPU the sender processes used, in cores (1.0 = one core busy)."""
    server_cores: float


def measure(senders: Senders, protocol: str, seconds: float) -> Ceiling:
    """Run `senders` flat out against a trivial server for `seconds`."""
    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=trivial_server_main, args=(protocol, child), daemon=True)
    server.start()
    try:
        port = parent.recv()
        senders.target("127.0.0.1", port)
        pids = senders.pids
        time.sleep(0.2)
        before, server_before = procstat.usage(pids), procstat.cpu_seconds(server.pid or 0)
        senders.phase("ceiling", 0.0)
        started = time.monotonic()
        time.sleep(seconds)
        after, server_after = procstat.usage(pids), procstat.cpu_seconds(server.pid or 0)
        elapsed = time.monotonic() - started
        senders.pause()
        stats, _ = senders.report("ceiling")
    finally:
        parent.close()
        server.join(2)
        if server.is_alive():
            server.kill()
    return Ceiling(
        spans_per_second=stats.spans_per_second,
        sender_cores=(after.cpu_seconds - before.cpu_seconds) / elapsed,
        server_cores=(server_after - server_before) / elapsed,
    )
