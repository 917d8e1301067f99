"""Overload: refused at the door, never accepted and then dropped."""

from __future__ import annotations

from pathlib import Path

from tests.cluster_support import KEEP_ALL
from tests.e2e.cluster_harness import address_of, post
from tests.e2e.harness import RecordingBackend, RefineryProcess, wait_until
from tests.otlp_builders import request, span


def write_config(directory: Path, backend: RecordingBackend) -> Path:
    path = directory / "refinery.yaml"
    path.write_text(
        "\n".join(
            [
                "listen: {otlp_grpc: 127.0.0.1:0, otlp_http: 127.0.0.1:0, api: 127.0.0.1:0}",
                "traces: {send_delay: 200ms, trace_timeout: 5s}",
                "store: {path: null}",
                "export:",
                "  otlp:",
                f"    endpoint: {backend.endpoint}",
                "    queue_max_bytes: 1MiB",
                "    retry_initial_interval: 100ms",
                "    retry_max_interval: 500ms",
                "    retry_max_elapsed: 10m",
            ]
        )
        + "\n"
    )
    return path


def test_a_backend_that_cannot_keep_up_gets_backpressure_not_drops(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    with RecordingBackend() as backend:
        backend.down = True
        with RefineryProcess(write_config(tmp_path, backend), rules) as node:
            address = address_of(node)
            padding = "p" * 700
            accepted = refused = 0
            trace = 1
            while refused < 20 and trace < 5000:
                body = request(
                    *(
                        span(trace, n, None if n == 1 else 1, attrs={"pad": padding})
                        for n in range(1, 21)
                    )
                ).SerializeToString()
                status = post(address, body)
                assert status in (200, 429), status
                if status == 200:
                    accepted += 20
                else:
                    refused += 1
                trace += 1
            assert refused == 20, "the node pushed back"
            assert accepted > 400, "it took what fits first"
            wait_until(
                lambda: node.metric("refinery_spans_waiting") == 0, what="every trace decided"
            )
            assert node.metric("refinery_export_spans_total", outcome="dropped_queue_full") == 0
            backend.down = False
            wait_until(lambda: len(backend.spans()) == accepted, timeout=60, what="delivery")
            assert node.metric("refinery_export_spans_total", outcome="sent") == accepted
