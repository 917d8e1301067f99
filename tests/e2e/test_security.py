"""`refinery-py serve` with TLS and ingest tokens, driven by the OpenTelemetry SDK's exporters:
tenants' tokens name their customers, which the rules and the store then see; certificates and
tokens are rotated on disk without a restart; cluster members talk over mutual TLS with a shared
secret; a node of two workers (a supervisor's API, per-worker doors) speaks TLS and wants tokens
everywhere too."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from refinery_py.cli import main
from tests.cluster_support import KEEP_ALL, free_port
from tests.e2e.cluster_harness import SpreadTraffic, address_of, check_whole_once
from tests.e2e.harness import RecordingBackend, RefineryProcess, wait_until
from tests.tls_support import Authority, Pair

TENANT_RULES = """\
RulesVersion: 2
Samplers:
  __default__:
    RulesBasedSampler:
      Rules:
        - Name: keep acme
          Conditions:
            - Field: customer.id
              Operator: "="
              Value: acme
          SampleRate: 1
        - Name: drop everyone else
          Drop: true
"""


@pytest.fixture(autouse=True)
def _no_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these variables override the SDK HTTP exporter's certificate_file.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def finished_spans(traces: int, service: str = "shop") -> list[ReadableSpan]:
    """Finished spans from the real SDK: per trace a root and two children, no customer."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.e2e.security")
    for _ in range(traces):
        with tracer.start_as_current_span("GET /cart"):
            for child in range(2):
                with tracer.start_as_current_span(f"SELECT {child}"):
                    pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def grpc_export(
    address: str,
    ca: Authority,
    spans: Sequence[ReadableSpan],
    token: str | None,
    client: Pair | None = None,
    *,
    timeout: float = 10,
) -> SpanExportResult:
    """An export by the SDK; TLS failures are retried until `timeout`, token refusals not."""
    exporter = GrpcSpanExporter(
        endpoint=address,
        insecure=False,
        credentials=ca.channel_credentials(client),
        headers={"authorization": f"Bearer {token}"} if token else None,
        timeout=timeout,
    )
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def http_export(
    address: str,
    ca: Path,
    spans: Sequence[ReadableSpan],
    token: str | None,
    *,
    timeout: float = 10,
) -> SpanExportResult:
    """An export by the SDK; TLS failures are retried until `timeout`, token refusals not."""
    exporter = HttpSpanExporter(
        endpoint=f"https://{address}/v1/traces",
        certificate_file=str(ca),
        headers={"authorization": f"Bearer {token}"} if token else None,
        timeout=timeout,
    )
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def https_status(url: str, context: ssl.SSLContext | None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def reachable_in_plain_text(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/ready")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def test_tenants_tokens_name_their_customers_over_tls_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = Authority(tmp_path, "ca")
    ca.issue("node")
    apps = Authority(tmp_path, "apps")  # signs the client certificates of the gRPC door
    apps.issue("refinery-export")  # what the node presents to the backend
    (tmp_path / "globex.token").write_text("globex-token\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(TENANT_RULES)
    backend_pair = ca.issue("backend")
    backend_credentials = grpc.ssl_server_credentials(
        [(backend_pair.key.read_bytes(), backend_pair.cert.read_bytes())],
        root_certificates=apps.cert.read_bytes(),
        require_client_auth=True,
    )
    with RecordingBackend(credentials=backend_credentials) as backend:
        config = tmp_path / "refinery.yaml"
        config.write_text(
            f"""\
listen: {{otlp_grpc: 127.0.0.1:0, otlp_http: 127.0.0.1:0, api: 127.0.0.1:0}}
traces: {{send_delay: 200ms, trace_timeout: 5s}}
store: {{path: {tmp_path / "traces.db"}}}
tls:
  cert_file: node.crt
  key_file: node.key
  client_ca_file: apps.crt
  client_cert_doors: [otlp_grpc]
auth:
  tokens:
    - {{token: acme-token, customer: acme}}
    - {{token_file: globex.token, customer: globex}}
export:
  otlp:
    endpoint: https://{backend.endpoint}
    ca_file: ca.crt
    cert_file: refinery-export.crt
    key_file: refinery-export.key
    batch_timeout: 50ms
    retry_initial_interval: 100ms
"""
        )
        api_tls = ca.client_context()
        with RefineryProcess(config, rules, api_tls=api_tls) as refinery:
            grpc_door = refinery.addresses["listening for OTLP/gRPC"]
            http_door = refinery.addresses["listening for OTLP/HTTP"]
            app = apps.issue("checkout")
            acme_spans = finished_spans(3)
            assert grpc_export(grpc_door, ca, acme_spans, "acme-token", app) is (
                SpanExportResult.SUCCESS
            )
            globex_spans = finished_spans(2)
            assert http_export(http_door, ca.cert, globex_spans, "globex-token") is (
                SpanExportResult.SUCCESS
            )
            wait_until(lambda: refinery.metric("refinery_traces_decided_total") == 5, what="5")
            wait_until(lambda: len(backend.spans()) == 9, what="acme's 9 spans at the backend")

            # The rules saw each tenant's customer: acme kept, globex dropped. The backend got
            # acme's spans over mutual TLS, the customer in their resource.
            received = backend.spans()
            assert {s.resource.get("customer.id") for s in received} == {"acme"}
            assert {s.trace_id for s in received} == {
                format(s.context.trace_id, "032x") for s in acme_spans if s.context
            }
            kept = refinery.metric("refinery_traces_decided_total", decision="kept")
            assert kept == 3
            # The store saw the customer too.
            status, body = refinery.get("/api/v1/customers")
            assert status == 200
            customers = json.loads(body)["customers"]
            assert [(c["customer"], c["kept_traces"]) for c in customers] == [("acme", 3)]
            query = ["query", "customers", "--api", refinery.api, "--json"]
            assert main([*query, "--cacert", str(ca.cert)]) == 0
            assert json.loads(capsys.readouterr().out)["customers"] == customers
            assert main(query) == 1  # the system's CAs do not know this node
            assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err

            # Refused: no token, a wrong token, no client certificate on the gRPC door.
            assert http_export(http_door, ca.cert, finished_spans(1), None) is (
                SpanExportResult.FAILURE
            )
            assert http_export(http_door, ca.cert, finished_spans(1), "stolen") is (
                SpanExportResult.FAILURE
            )
            no_client_cert = grpc_export(grpc_door, ca, finished_spans(1), "acme-token", timeout=2)
            assert no_client_cert is SpanExportResult.FAILURE
            rejected = "refinery_requests_rejected_total"
            assert refinery.metric(rejected, protocol="http_protobuf", reason="missing_token") == 1
            assert refinery.metric(rejected, protocol="http_protobuf", reason="invalid_token") == 1
            assert refinery.metric("refinery_traces_decided_total") == 5  # nothing else came in

            # The API speaks TLS only; /metrics needs no client certificate (not in
            # client_cert_doors).
            assert https_status(refinery.api + "/ready", api_tls) == 200
            assert not reachable_in_plain_text(refinery.addresses["serving the API"])
            assert refinery.terminate() == 0


def test_certificates_and_token_files_rotate_without_a_restart(tmp_path: Path) -> None:
    first_ca = Authority(tmp_path, "first-ca")
    served = first_ca.issue("node")
    token_file = tmp_path / "app.token"
    token_file.write_text("old-token")
    config = tmp_path / "refinery.yaml"
    config.write_text(
        """\
listen: {otlp_grpc: 127.0.0.1:0, otlp_http: 127.0.0.1:0, api: 127.0.0.1:0}
traces: {send_delay: 200ms, trace_timeout: 5s}
store: {path: null}
rules_file: null
tls: {cert_file: node.crt, key_file: node.key, doors: [otlp_grpc, otlp_http]}
auth:
  tokens:
    - {token_file: app.token, customer: acme}
"""
    )
    with RefineryProcess(config) as refinery:
        grpc_door = refinery.addresses["listening for OTLP/gRPC"]
        http_door = refinery.addresses["listening for OTLP/HTTP"]
        spans = finished_spans(1)
        assert http_export(http_door, first_ca.cert, spans, "old-token") is SpanExportResult.SUCCESS

        second_ca = Authority(tmp_path, "second-ca")
        second_ca.issue("renewed").rotate_into(served)
        token_file.write_text("new-token\n")
        os.kill(refinery.process.pid, signal.SIGHUP)  # or wait for the next poll, 5 s at most
        wait_until(
            lambda: (
                http_export(http_door, second_ca.cert, spans, "new-token")
                is SpanExportResult.SUCCESS
            ),
            what="the new certificate and token in use",
        )
        assert grpc_export(grpc_door, second_ca, spans, "new-token") is SpanExportResult.SUCCESS
        assert http_export(http_door, second_ca.cert, spans, "old-token") is (
            SpanExportResult.FAILURE
        )
        old_ca = http_export(http_door, first_ca.cert, spans, "new-token", timeout=2)
        assert old_ca is SpanExportResult.FAILURE
        reloads = "refinery_credential_reloads_total"
        assert refinery.metric(reloads, kind="server_tls", outcome="applied") == 1
        assert refinery.metric(reloads, kind="tokens", outcome="applied") == 1

        # A broken renewal (a key that is not the certificate's) is refused; the node keeps
        # serving the certificate it has, and says so.
        served.key.write_bytes(second_ca.issue("other").key.read_bytes())
        os.kill(refinery.process.pid, signal.SIGHUP)
        wait_until(
            lambda: refinery.metric(reloads, kind="server_tls", outcome="failed") == 1,
            what="the broken renewal refused",
        )
        assert http_export(http_door, second_ca.cert, spans, "new-token") is (
            SpanExportResult.SUCCESS
        )
        assert any("still serving the previous certificate" in line for line in refinery.log)
        assert refinery.terminate() == 0


def node_config(
    directory: Path, name: str, backend: RecordingBackend, peers: list[str], port: int
) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(
        f"""\
listen:
  otlp_grpc: 127.0.0.1:0
  otlp_http: 127.0.0.1:0
  api: 127.0.0.1:0
  peer: 127.0.0.1:{port}
traces: {{send_delay: 500ms, trace_timeout: 30s}}
store: {{path: null}}
export:
  otlp: {{endpoint: {backend.endpoint}, protocol: grpc, retry_initial_interval: 100ms}}
cluster:
  peers: [{", ".join(peers)}]
  secret: cluster-s3cret
tls:
  cert_file: {name}.crt
  key_file: {name}.key
  client_ca_file: cluster-ca.crt
  doors: [peer]
"""
    )
    return path


def test_a_cluster_forwards_over_mutual_tls_with_its_secret(tmp_path: Path) -> None:
    ca = Authority(tmp_path, "cluster-ca")
    ports = [free_port(), free_port()]
    peers = [f"127.0.0.1:{port}" for port in ports]
    for index in range(2):
        ca.issue(f"node{index}")
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    with (
        RecordingBackend() as backend,
        RefineryProcess(node_config(tmp_path, "node0", backend, peers, ports[0]), rules) as a,
        RefineryProcess(node_config(tmp_path, "node1", backend, peers, ports[1]), rules) as b,
    ):
        traffic = SpreadTraffic()
        addresses = [address_of(a), address_of(b)]
        for _ in range(30):
            trace = traffic.new_trace()
            for number in range(2, traffic.spans_per_trace + 1):
                traffic.send_span(trace, number, addresses)
            traffic.send_span(trace, 1, addresses)
        nodes = [a, b]
        wait_until(
            lambda: sum(n.metric("refinery_traces_decided_total") for n in nodes) == 30,
            what="30 traces decided",
        )
        wait_until(lambda: len(backend.spans()) == 180, what="every span exported")
        check_whole_once(backend, traffic)
        forwarded = sum(n.metric("refinery_cluster_spans_total", direction="sent") for n in nodes)
        assert forwarded > 0
        assert forwarded == sum(
            n.metric("refinery_cluster_spans_total", direction="received") for n in nodes
        )
        # The peer doors speak TLS only, and want a certificate from the cluster's CA and the
        # secret besides.
        for peer in peers:
            assert not reachable_in_plain_text(peer)
        outsider = Authority(tmp_path, "outsider").issue("outsider")
        for client in (None, outsider):
            with pytest.raises((ssl.SSLError, OSError)):
                https_status(f"https://{peers[0]}/peer/v1/node", ca.client_context(client))
        member = ca.issue("member-without-secret")
        assert https_status(f"https://{peers[0]}/peer/v1/node", ca.client_context(member)) == 401
        assert a.terminate() == 0
        assert b.terminate() == 0


ROUTED = re.compile(r"listening for routed OTLP/(gRPC|HTTP) on (.+)$")


def test_two_workers_serve_tls_and_want_tokens_on_every_door(tmp_path: Path) -> None:
    ca = Authority(tmp_path, "ca")
    ca.issue("node")
    config = tmp_path / "refinery.yaml"
    config.write_text(
        """\
listen:
  otlp_grpc: 127.0.0.1:0
  otlp_http: 127.0.0.1:0
  api: 127.0.0.1:0
  otlp_grpc_per_worker: 127.0.0.1:0
  otlp_http_per_worker: 127.0.0.1:0
traces: {send_delay: 200ms, trace_timeout: 5s}
store: {path: null}
rules_file: null
tls: {cert_file: node.crt, key_file: node.key}
auth:
  tokens:
    - {token: app-token}
"""
    )
    api_tls = ca.client_context()
    with RefineryProcess(config, workers=2, api_tls=api_tls) as refinery:
        wait_until(
            lambda: sum(bool(ROUTED.search(line)) for line in refinery.log) == 2,
            what="the per-worker doors listed",
        )
        routed = {
            match.group(1): match.group(2).split(", ")
            for match in map(ROUTED.search, refinery.log)
            if match
        }
        wait_until(lambda: https_status(refinery.api + "/ready", api_tls) == 200, what="ready")
        spans = finished_spans(1)
        grpc_doors = [refinery.addresses["listening for OTLP/gRPC"], *routed["gRPC"]]
        http_doors = [refinery.addresses["listening for OTLP/HTTP"], *routed["HTTP"]]
        for door in grpc_doors:
            assert grpc_export(door, ca, spans, "app-token") is SpanExportResult.SUCCESS
            assert grpc_export(door, ca, spans, None) is SpanExportResult.FAILURE
        for door in http_doors:
            assert http_export(door, ca.cert, spans, "app-token") is SpanExportResult.SUCCESS
            assert http_export(door, ca.cert, spans, "nope") is SpanExportResult.FAILURE
        rejected = "refinery_requests_rejected_total"
        assert refinery.metric(rejected, reason="missing_token") == 3
        assert refinery.metric(rejected, reason="invalid_token") == 3
        assert refinery.metric("refinery_spans_received_total") == 6 * len(spans)
        assert not reachable_in_plain_text(refinery.addresses["serving the API"])
        assert refinery.terminate() == 0
