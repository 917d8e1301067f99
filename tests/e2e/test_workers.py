"""`serve --workers 2`: traces are decided whole whichever worker their spans reach."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from refinery_py.cluster.body_file import shared_memory_dir
from tests.e2e.harness import RecordingBackend, RefineryProcess, wait_until, write_config
from tests.otlp_builders import request, span

KEEP_ALL = (
    "RulesVersion: 2\nSamplers:\n  __default__:\n    DeterministicSampler:\n      SampleRate: 1\n"
)


def post(address: str, body: bytes) -> int:
    """One request on its own connection, so the kernel may hand it to either worker."""
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_spans_of_a_trace_meet_at_their_owner(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    with RecordingBackend() as backend:
        config = write_config(tmp_path, backend)
        with RefineryProcess(config, rules, extra_args=["--workers", "2"]) as node:
            address = node.http_endpoint.removeprefix("http://").removesuffix("/v1/traces")
            # Every span of every trace in its own request and connection; root last.
            for n in range(1, 41):
                for child in range(2, 6):
                    assert post(address, request(span(n, child, 1)).SerializeToString()) == 200
                assert post(address, request(span(n, 1)).SerializeToString()) == 200
            wait_until(lambda: node.metric("refinery_traces_decided_total") == 40, what="decisions")
            wait_until(
                lambda: (
                    node.metric("refinery_export_spans_total", outcome="sent", exporter="otlp")
                    == 200
                ),
                what="exports",
            )
            assert node.metric("refinery_cluster_spans_total", direction="sent") > 0
            assert node.metric("refinery_cluster_spans_total", direction="received") == (
                node.metric("refinery_cluster_spans_total", direction="sent")
            )
            assert node.metric("refinery_workers") == 2
            status, body = node.get("/ready")
            assert status == 200
            assert json.loads(body)["workers"] == ["serving", "serving"]
            assert node.terminate() == 0
        received = backend.by_trace()
        assert len(received) == 40
        for spans in received.values():
            assert len(spans) == 5
            roots = [s for s in spans if not s.span.parent_span_id]
            assert roots[0].attributes["meta.span_count"] == 5  # decided whole, not in pieces


def test_a_worker_that_dies_is_restarted_and_what_it_held_is_counted(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    config = write_config(tmp_path, None, send_delay="60s", trace_timeout="120s")
    with RefineryProcess(config, rules, workers=2) as node:
        address = node.http_endpoint.removeprefix("http://").removesuffix("/v1/traces")
        for n in range(1, 101):  # 100 traces of 3 spans, held for a minute
            body = request(*(span(n, k, None if k == 1 else 1) for k in range(1, 4)))
            assert post(address, body.SerializeToString()) == 200
        wait_until(lambda: node.metric("refinery_spans_waiting") == 300, what="300 held")
        time.sleep(2.5)  # the supervisor's own scrape (every 2 s) has seen them
        received = node.metric("refinery_spans_received_total")
        children = subprocess.run(
            ["pgrep", "-P", str(node.process.pid)], capture_output=True, text=True, check=True
        )
        pids = [int(p) for p in children.stdout.split()]
        workers = [p for p in pids if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(workers) == 2
        fds = Path(f"/proc/{workers[0]}/fd").iterdir()
        its_body_files = [link for link in map(os.readlink, fds) if link.endswith(".body")]
        assert bool(its_body_files) == (shared_memory_dir() is not None)
        os.kill(workers[0], signal.SIGKILL)
        wait_until(lambda: node.metric("refinery_worker_restarts") == 1, what="restart")
        # Counters never go backwards, also while the dead worker is being replaced.
        for _ in range(10):
            assert node.metric("refinery_spans_received_total") == received
            time.sleep(0.05)
        wait_until(lambda: node.get("/ready")[0] == 200, what="ready again")
        # Its successor removed the files it had in shared memory.
        assert not [path for path in its_body_files if os.path.exists(path)]
        assert node.metric("refinery_spans_received_total") == received
        lost = node.metric("refinery_worker_lost_spans_total", where="buffered")
        assert 0 < lost < 300  # the dead worker's share of what was held
        assert node.metric("refinery_spans_waiting") == 300 - lost
        assert any("exited with code -9" in line and "spans died" in line for line in node.log)
        assert post(address, request(span(7, 1)).SerializeToString()) == 200
        assert node.terminate() == 0


def big_request(size: int, first_trace: int) -> tuple[bytes, int]:
    """An OTLP request of about `size` bytes: traces of 20 spans of ~1 KB; (body, spans)."""
    padding = "x" * 900
    spans = []
    trace = first_trace
    while True:
        spans.extend(
            span(trace, number, None if number == 1 else 1, attrs={"pad": padding})
            for number in range(1, 21)
        )
        trace += 1
        if len(spans) * 1000 >= size:
            break
    body = request(*spans).SerializeToString()
    return body, len(spans)


def test_requests_of_every_size_cross_between_workers_whole(tmp_path: Path) -> None:
    """Forwarded parts of a request as large as the limit allows reach their owner (they were
    once cut up as if they were OTLP, and lost)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    sizes = [2_000, 200_000, 1_000_000, 3_500_000, 8_000_000, 16 * 1024 * 1024 - 400_000]
    with RecordingBackend(max_message_bytes=64 << 20) as backend:
        config = write_config(tmp_path, backend)
        with RefineryProcess(config, rules, workers=2) as node:
            address = node.http_endpoint.removeprefix("http://").removesuffix("/v1/traces")
            sent = 0
            first = 1
            for size in sizes:
                body, count = big_request(size, first)
                assert len(body) <= 16 * 1024 * 1024
                assert post(address, body) == 200
                sent += count
                first += count // 20
            wait_until(lambda: len(backend.spans()) >= sent, timeout=60, what="every span")
            assert len(backend.spans()) == sent
            assert node.metric("refinery_cluster_forward_spans_total", outcome="rejected") == 0
            # Where the machine has /dev/shm, the workers left each other the bodies there.
            by_file = node.metric("refinery_cluster_sibling_bodies_total", via="file")
            by_socket = node.metric("refinery_cluster_sibling_bodies_total", via="socket")
            if shared_memory_dir() is not None:
                assert by_file > 0 and by_socket == 0
            else:
                assert by_file == 0 and by_socket > 0
            assert node.terminate() == 0
