"""An OTLP/gRPC sink that audits every trace it receives: whole, once, from one decision?

For the cluster benchmark's join/leave run (keep-everything rules): each span's trace ID, span
ID, root-ness and its `meta.refinery.send_reason` / `meta.span_count` annotations are noted, and
at the end a trace counts as split when its root's `meta.span_count` differs from the spans that
arrived, when spans arrived from more than one decision (send reasons differ), or when a span
arrived twice. Runs in its own process (`AuditSinkProcess`) like bench/sink.py.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from concurrent import futures
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


@dataclass
class _Trace:
    spans: set[bytes] = field(default_factory=set)
    duplicates: int = 0
    span_count: int | None = None
    reasons: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Audit:
    spans: int
    traces: int
    split: int
    duplicated_spans: int
    examples: list[str]
    split_ids: list[bytes]


class _Sink:
    def __init__(self) -> None:
        self.traces: dict[bytes, _Trace] = {}
        self.spans = 0
        self._lock = threading.Lock()

    def export(self, request: bytes, _: grpc.ServicerContext) -> bytes:
        parsed = ExportTraceServiceRequest.FromString(request)
        with self._lock:
            for resource_spans in parsed.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self._note(span)
        return b""

    def _note(self, span: object) -> None:
        trace = self.traces.setdefault(span.trace_id, _Trace())  # type: ignore[attr-defined]
        self.spans += 1
        if span.span_id in trace.spans:  # type: ignore[attr-defined]
            trace.duplicates += 1
        trace.spans.add(span.span_id)  # type: ignore[attr-defined]
        for attribute in span.attributes:  # type: ignore[attr-defined]
            if attribute.key == "meta.refinery.send_reason":
                trace.reasons.add(attribute.value.string_value)
            elif attribute.key == "meta.span_count":
                trace.span_count = attribute.value.int_value

    def audit(self) -> Audit:
        with self._lock:
            split = 0
            duplicated = 0
            examples: list[str] = []
            split_ids: list[bytes] = []
            for trace_id, trace in self.traces.items():
                duplicated += trace.duplicates
                whole = trace.span_count == len(trace.spans) and len(trace.reasons) == 1
                if not whole or trace.duplicates:
                    split += 1
                    split_ids.append(trace_id)
                    if len(examples) < 5:
                        examples.append(
                            f"{trace_id.hex()}: {len(trace.spans)} spans, root says "
                            f"{trace.span_count}, decided as {sorted(trace.reasons)}"
                        )
            return Audit(self.spans, len(self.traces), split, duplicated, examples, split_ids)


def _main(conn: Connection) -> None:
    sink = _Sink()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    handler = grpc.method_handlers_generic_handler(
        _SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(sink.export)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    conn.send(port)
    while True:
        command = conn.recv()
        if command == "spans":
            conn.send(sink.spans)
        elif command == "audit":
            conn.send(sink.audit())
        elif command == "stop":
            server.stop(grace=None)
            conn.send(None)
            return


class AuditSinkProcess:
    def __init__(self) -> None:
        context = mp.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(target=_main, args=(child,), daemon=True)
        self.process.start()
        self.port: int = self._pipe.recv()

    def spans(self) -> int:
        self._pipe.send("spans")
        count: int = self._pipe.recv()
        return count

    def audit(self) -> Audit:
        self._pipe.send("audit")
        result: Audit = self._pipe.recv()
        return result

    def stop(self) -> None:
        if self.process.is_alive():
            self._pipe.send("stop")
            self._pipe.recv()
        self.process.join(5)
