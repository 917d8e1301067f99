"""OpenTelemetry Collectors on both sides of a node that wants TLS, client certificates and a
token: one sends to it the way Collectors are configured to (`tls`, `headers`), the other takes
the node's export over mutual TLS. Go's TLS and gRPC, and the Collector's own encoding (fields
in descending order), rather than Python's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.cluster_support import KEEP_ALL, free_port
from tests.e2e.harness import REPO, RecordingBackend, RefineryProcess, wait_until
from tests.e2e.test_security import finished_spans
from tests.tls_support import Authority, Pair

COLLECTOR = REPO / "bench" / "peers" / "bin" / "otelcol-bench"


def collector_config(receiver: dict[str, object], exporter: dict[str, object]) -> dict[str, object]:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": receiver}}},
        "exporters": {"otlp": exporter},
        "service": {
            "telemetry": {"logs": {"level": "warn"}, "metrics": {"level": "none"}},
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}},
        },
    }


class Collector:
    """The Collector the benchmark builds (`make peers`, which `make test` runs)."""

    def __init__(self, directory: Path, name: str, config: dict[str, object]) -> None:
        if not COLLECTOR.exists():
            raise RuntimeError(f"{COLLECTOR} is missing: run `make test`, which builds it")
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = directory / f"{name}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [str(COLLECTOR), "--config", str(path)], stdout=log, stderr=subprocess.STDOUT
            )

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(30)


def tls_files(pair: Pair, ca: Path) -> dict[str, str]:
    return {"cert_file": str(pair.cert), "key_file": str(pair.key), "ca_file": str(ca)}


def test_collectors_send_to_and_take_from_a_node_over_mutual_tls(tmp_path: Path) -> None:
    ca = Authority(tmp_path, "ca")  # signs every certificate here, clients' and servers'
    ca.issue("node")
    ca.issue("refinery-export")
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    front_port, back_port = free_port(), free_port()
    with RecordingBackend() as backend:
        back = collector_config(
            {
                "endpoint": f"127.0.0.1:{back_port}",
                "tls": {
                    "cert_file": str(ca.issue("backend-collector").cert),
                    "key_file": str(tmp_path / "backend-collector.key"),
                    "client_ca_file": str(ca.cert),
                },
            },
            {"endpoint": backend.endpoint, "tls": {"insecure": True}},
        )
        config = tmp_path / "refinery.yaml"
        config.write_text(
            f"""\
listen: {{otlp_grpc: 127.0.0.1:0, otlp_http: 127.0.0.1:0, api: 127.0.0.1:0}}
traces: {{send_delay: 200ms, trace_timeout: 5s}}
store: {{path: null}}
tls: {{cert_file: node.crt, key_file: node.key, client_ca_file: ca.crt, doors: [otlp_grpc]}}
auth:
  tokens:
    - {{token: collector-token, customer: acme}}
export:
  otlp:
    endpoint: https://127.0.0.1:{back_port}
    ca_file: ca.crt
    cert_file: refinery-export.crt
    key_file: refinery-export.key
    batch_timeout: 50ms
    retry_initial_interval: 100ms
"""
        )
        with (
            Collector(tmp_path, "back", back),
            RefineryProcess(config, rules) as refinery,
        ):
            front = collector_config(
                {"endpoint": f"127.0.0.1:{front_port}"},
                {
                    "endpoint": refinery.grpc_endpoint,
                    "tls": tls_files(ca.issue("front-collector"), ca.cert),
                    "headers": {"authorization": "Bearer collector-token"},
                },
            )
            with Collector(tmp_path, "front", front):
                spans = finished_spans(4)
                exporter = OTLPSpanExporter(
                    endpoint=f"127.0.0.1:{front_port}", insecure=True, timeout=10
                )
                wait_until(
                    lambda: exporter.export(spans) is SpanExportResult.SUCCESS,
                    what="the front Collector to take spans",
                )
                exporter.shutdown()
                wait_until(lambda: len(backend.spans()) >= 12, what="12 spans through both")
                received = backend.spans()
                assert {s.trace_id for s in received} == {
                    format(s.context.trace_id, "032x") for s in spans if s.context
                }
                # The node tagged the Collector's resource (encoded Go's way) with the
                # token's customer, and it survived the second Collector.
                assert {s.resource.get("customer.id") for s in received} == {"acme"}
                assert {s.resource.get("service.name") for s in received} == {"shop"}
                assert refinery.metric("refinery_spans_received_total", protocol="grpc") == 12
                assert refinery.terminate() == 0
