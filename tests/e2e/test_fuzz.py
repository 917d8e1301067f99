"""Thousands of damaged requests at a running node's three doors: no crash, no hang, no 5xx.

A seeded fuzzer (`tests/fuzz_bodies.py`: every case is a valid body damaged by one family of
mutation) sends OTLP/gRPC, OTLP/HTTP (protobuf and JSON, plain, gzip and deflate, with right
and wrong headers) and peer-door requests (span batches, handoffs, membership, lookups) to one
node that is a member of a (one-member) static cluster without a secret, so the peer door runs
its full validation. Every answer must be a 2xx/4xx (gRPC: OK, INVALID_ARGUMENT or
RESOURCE_EXHAUSTED), every request must be answered (client timeouts), the node's memory must
stay under `RSS_BOUND`, its log must hold no traceback, nothing it accepted may be refused by
the backend or dropped, and valid traffic sent afterwards through every door must be decided
and exported whole.
"""

from __future__ import annotations

import collections
import http.client
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from refinery_py.otlp.batch_codec import encode_span_batch
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.otlp.json import request_to_json
from tests.cluster_support import KEEP_ALL, free_port
from tests.e2e.faults import RssWatch
from tests.e2e.harness import EXPORT_METHOD, RecordingBackend, RefineryProcess, wait_until
from tests.fuzz_bodies import JSON, PROTOBUF, Case, cases
from tests.otlp_builders import request, span
from tests.otlp_reorder import reorder_request

SEED = 14
LIMIT = 4 << 20
"""The node's request size limit (bombs inflate just past it)."""
COUNTS = {"grpc": 1200, "http": 2400, "peer": 1600}
RSS_BOUND = 400 << 20
"""The node's RSS must stay under this: ~80 MiB idle, plus a few requests of up to 4 MiB each
being decoded at once; a leak or an unbounded allocation goes far past it."""
GRPC_ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
GRPC_ANSWERS.add(grpc.StatusCode.RESOURCE_EXHAUSTED)
TIMEOUT = 30.0
"""Seconds any one answer may take before the node counts as hung."""


def write_config(directory: Path, backend: RecordingBackend, peer_port: int) -> Path:
    path = directory / "fuzzed.yaml"
    path.write_text(
        "\n".join(
            [
                "listen:",
                "  otlp_grpc: 127.0.0.1:0",
                "  otlp_http: 127.0.0.1:0",
                "  api: 127.0.0.1:0",
                f"  peer: 127.0.0.1:{peer_port}",
                "traces: {send_delay: 200ms, trace_timeout: 2s}",
                f"limits: {{max_request_bytes: {LIMIT}}}",
                "store: {path: null}",
                "export:",
                "  otlp:",
                f"    endpoint: {backend.endpoint}",
                "    protocol: grpc",
                "    batch_timeout: 50ms",
                "    retry_initial_interval: 100ms",
                "cluster:",
                f"  peers: [127.0.0.1:{peer_port}]",
            ]
        )
        + "\n"
    )
    return path


class HttpSender:
    """One keep-alive connection; a request the server does not answer is an outcome too."""

    def __init__(self, address: str) -> None:
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.connection = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)

    def send(self, case: Case) -> str:
        headers = {}
        if case.content_type is not None:
            headers["Content-Type"] = case.content_type
        if case.content_encoding is not None:
            headers["Content-Encoding"] = case.content_encoding
        try:
            self.connection.request(case.method, case.path, case.body, headers)
            response = self.connection.getresponse()
            response.read()
        except TimeoutError:
            self.connection.close()
            self.connection = self._connect()
            return "no answer (timeout)"
        except OSError as exc:
            self.connection.close()
            self.connection = self._connect()
            return f"no answer ({type(exc).__name__})"
        if response.will_close:
            self.connection.close()
            self.connection = self._connect()
        return str(response.status)

    def close(self) -> None:
        self.connection.close()


def grpc_sender(address: str) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(
        address,
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
    )
    return channel, channel.unary_unary(EXPORT_METHOD)


def fuzz_door(door: str, address: str, outcomes: collections.Counter[tuple[str, str, str]]) -> None:
    """Send every case of `door`; count (door, answer, family)."""
    sent = cases(door, COUNTS[door], SEED, limit=LIMIT)
    if door == "grpc":
        channel, export = grpc_sender(address)
        try:
            for case in sent:
                compression = grpc.Compression.Gzip if case.grpc_gzip else None
                try:
                    export(case.body, timeout=TIMEOUT, compression=compression)
                    answer = grpc.StatusCode.OK.name
                except grpc.RpcError as error:
                    answer = error.code().name
                outcomes[(door, answer, case.family)] += 1
        finally:
            channel.close()
        return
    sender = HttpSender(address)
    try:
        for case in sent:
            outcomes[(door, sender.send(case), case.family)] += 1
    finally:
        sender.close()


def bad_answers(outcomes: collections.Counter[tuple[str, str, str]]) -> list[str]:
    bad = []
    for (door, answer, family), count in sorted(outcomes.items()):
        if door == "grpc":
            good = answer in {code.name for code in GRPC_ANSWERS}
        else:
            good = answer.isdigit() and 200 <= int(answer) < 500
        if not good:
            bad.append(f"{door} {family}: {answer} x{count}")
    return bad


def distribution(outcomes: collections.Counter[tuple[str, str, str]]) -> str:
    by_answer: collections.Counter[tuple[str, str]] = collections.Counter()
    for (door, answer, _), count in outcomes.items():
        by_answer[(door, answer)] += count
    return ", ".join(f"{door} {answer}: {n}" for (door, answer), n in sorted(by_answer.items()))


AFTER = 0xFACE << 112
"""Trace IDs of the valid traffic sent after the fuzzing (no fuzzed body can carry them)."""


def valid_after(door: int, number: int) -> tuple[int, bytes]:
    trace = AFTER + door * 1000 + number
    body = request(span(trace, 1), span(trace, 2, 1), span(trace, 3, 1), service=f"door{door}")
    return trace, body.SerializeToString()


def test_a_node_answers_thousands_of_damaged_requests_and_then_serves_valid_ones(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    with RecordingBackend(max_message_bytes=64 << 20) as backend:
        peer_port = free_port()
        config = write_config(tmp_path, backend, peer_port)
        with RefineryProcess(config, rules) as node:
            http_address = node.http_endpoint.removeprefix("http://").removesuffix("/v1/traces")
            doors = {
                "grpc": node.grpc_endpoint,
                "http": http_address,
                "peer": f"127.0.0.1:{peer_port}",
            }
            outcomes: collections.Counter[tuple[str, str, str]] = collections.Counter()
            with RssWatch(node.process.pid) as memory:
                threads = [
                    threading.Thread(target=fuzz_door, args=(door, address, outcomes))
                    for door, address in doors.items()
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(300)
            sent = sum(outcomes.values())
            report = (
                f"{sent} damaged requests, RSS {memory.first >> 20} MiB before, peak "
                f"{memory.peak >> 20} MiB: {distribution(outcomes)}"
            )
            print(report)
            assert sent == sum(COUNTS.values()), report
            assert not bad_answers(outcomes), "\n".join([report, *bad_answers(outcomes)])
            assert node.process.poll() is None, "the node died"
            assert memory.peak < RSS_BOUND, report
            assert node.get("/ready")[0] == 200

            expected = send_valid_traffic(doors)
            wait_until(
                lambda: all(t in backend.by_trace() for t in expected),
                timeout=60,
                what="the valid traffic after the fuzzing exported",
            )
            received = backend.by_trace()
            for trace_id, spans in expected.items():
                got = sorted(int.from_bytes(s.span.span_id, "big") for s in received[trace_id])
                assert got == spans, trace_id
                (root,) = [s for s in received[trace_id] if not s.span.parent_span_id]
                assert root.attributes["meta.span_count"] == len(spans)
            for outcome in ("rejected", "dropped_queue_full", "dropped_retries_exhausted"):
                assert node.metric("refinery_export_spans_total", outcome=outcome) == 0, outcome
            assert node.metric("refinery_requests_rejected_total", reason="malformed") > 0
            assert node.terminate() == 0
            log = "".join(node.log)
            assert "Traceback" not in log, log[-5000:]
            assert "Error handling request" not in log, log[-5000:]


def send_valid_traffic(doors: dict[str, str]) -> dict[str, list[int]]:
    """Ten 3-span traces through each door, in the Collector's field order where it matters;
    returns trace ID (hex) → span IDs."""
    expected: dict[str, list[int]] = {}
    sender = HttpSender(doors["http"])
    peer = HttpSender(doors["peer"])
    channel, export = grpc_sender(doors["grpc"])
    try:
        for number in range(10):
            for door in range(4):
                trace, body = valid_after(door, number)
                expected[f"{trace:032x}"] = [1, 2, 3]
                if door == 0:
                    case = Case("http", "valid", reorder_request(body, "descending"))
                    assert until_taken(sender.send, case) == "200"
                elif door == 1:
                    case = Case("http", "valid", request_to_json(body), content_type=JSON)
                    assert until_taken(sender.send, case) == "200"
                elif door == 2:
                    assert until_taken(grpc_export, export, body) == "OK"
                else:
                    record = encode_span_batch(split_request(body, OriginInterner()))
                    case = Case("peer", "valid", record, "/peer/v1/spans", content_type=PROTOBUF)
                    assert until_taken(peer.send, case) == "200"
    finally:
        sender.close()
        peer.close()
        channel.close()
    return expected


def grpc_export(export: Any, body: bytes) -> str:
    try:
        export(body, timeout=TIMEOUT, compression=grpc.Compression.Gzip)
    except grpc.RpcError as error:
        return str(error.code().name)
    return "OK"


def until_taken(send: Any, *args: Any) -> str:
    """Send until the answer is not "overloaded, retry" (a busy machine may say so), as a
    client would; the last answer."""
    for _ in range(50):
        answer = str(send(*args))
        if answer not in ("429", "RESOURCE_EXHAUSTED"):
            return answer
        time.sleep(0.2)
    return answer
