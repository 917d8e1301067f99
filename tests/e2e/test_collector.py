"""Every config in collector/ runs in the real Collector, with traces flowing through it.

The Collector is the one `make peers` builds (bench/peers: the otlp receiver, batch, the otlp_grpc,
otlphttp and load_balancing exporters). Each file is run as shipped, its addresses set through the
environment variables it documents; the traces come from the OpenTelemetry SDK, go through the
Collector to refinery_py and on to a recording backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry import trace as trace_api

from tests.cluster_support import free_ports
from tests.e2e.harness import REPO, RecordingBackend, RefineryProcess, wait_until
from tests.e2e.peers import PeerProcess, collector, free_port
from tests.e2e.sdk import trace_id_of, tracer_provider

KEEP_ALL = (
    "RulesVersion: 2\nSamplers:\n  __default__:\n    DeterministicSampler:\n      SampleRate: 1\n"
)
SPANS_PER_TRACE = 5
TRACES = 40
ROOT_ATTRIBUTES = {
    "http.response.status_code": 200,
    "app.order_total": 12.5,
    "app.flagged": False,
    "app.tags": ("a", "b"),
    "app.big": 2**53 + 1,  # past a double's integers: OTLP/JSON writes it as a string
}
"""Every value type an SDK sets, to arrive as it was sent whatever the encodings on the way."""


def node_config(directory: Path, backend: RecordingBackend, per_worker: int | None = None) -> Path:
    """A node's config; `per_worker`: the first of its workers' own OTLP/gRPC ports."""
    directory.mkdir()
    (directory / "rules.yaml").write_text(KEEP_ALL)
    config = directory / "refinery.yaml"
    owned = f"  otlp_grpc_per_worker: 127.0.0.1:{per_worker}\n" if per_worker else ""
    config.write_text(
        "listen:\n  otlp_grpc: 127.0.0.1:0\n  otlp_http: 127.0.0.1:0\n  api: 127.0.0.1:0\n"
        + owned
        + "rules_file: rules.yaml\n"
        "traces:\n  send_delay: 300ms\n  trace_timeout: 10s\nstore:\n  path: null\n"
        f"export:\n  otlp:\n    endpoint: {backend.endpoint}\n    protocol: grpc\n"
    )
    return config


def start_collector(
    config: Path, log_dir: Path, nodes: list[RefineryProcess], backends: list[str] | None = None
) -> tuple[PeerProcess, str]:
    """The Collector running `config`, listening on a free port; returns it and that address.
    `backends` (default: every node's OTLP/gRPC address) are the load-balancing tier's."""
    listen = f"127.0.0.1:{free_port()}"
    backends = backends or [node.grpc_endpoint for node in nodes]
    env = {
        "OTLP_GRPC_LISTEN": listen,
        "OTLP_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "REFINERY_ENDPOINT": nodes[0].grpc_endpoint,
        "REFINERY_NODES": "[" + ", ".join(backends) + "]",
    }
    process = collector(config, log_dir, env, name=f"otelcol-{config.stem}")
    process.wait_for_port(listen)
    return process, listen


def send_interleaved(endpoint: str) -> list[str]:
    """TRACES traces of SPANS_PER_TRACE spans; each export request carries one span of every
    trace, so a trace's spans reach the Collector in SPANS_PER_TRACE different requests."""
    with tracer_provider("grpc", endpoint, service="checkout", seed=7) as provider:
        tracer = provider.get_tracer("e2e")
        roots = [
            tracer.start_span(
                f"GET /orders/{n}", kind=trace_api.SpanKind.SERVER, attributes=ROOT_ATTRIBUTES
            )
            for n in range(TRACES)
        ]
        for child in range(SPANS_PER_TRACE - 1):
            for root in roots:
                context = trace_api.set_span_in_context(root)
                tracer.start_span(f"SELECT {child}", context=context).end()
            provider.force_flush()
        for root in roots:
            root.end()
        provider.force_flush()
    return [trace_id_of(root) for root in roots]


def assert_delivered_whole(backend: RecordingBackend, trace_ids: list[str]) -> None:
    wait_until(
        lambda: (
            sum(len(spans) for spans in backend.by_trace().values()) == TRACES * SPANS_PER_TRACE
        ),
        timeout=60,
        what="every span at the backend",
    )
    received = backend.by_trace()
    assert set(received) == set(trace_ids)
    for spans in received.values():
        assert len(spans) == SPANS_PER_TRACE
        (root,) = [s for s in spans if not s.span.parent_span_id]
        assert root.attributes["meta.span_count"] == SPANS_PER_TRACE, "decided whole, at once"
        for key, value in ROOT_ATTRIBUTES.items():
            got = root.attributes[key]
            if isinstance(value, tuple):  # an ArrayValue
                got = tuple(getattr(v, v.WhichOneof("value")) for v in got.values)
            assert got == value, key
            assert type(got) is type(value), key
        for span in spans:
            assert span.attributes["SampleRate"] == 1
            assert span.attributes["meta.refinery.reason"] == "deterministic/always"


def agent(tmp_path: Path, config: Path) -> None:
    """agent.yaml: SDK → Collector → one refinery_py node → backend."""
    with RecordingBackend() as backend:
        node_config(tmp_path / "node", backend)
        with RefineryProcess(
            tmp_path / "node" / "refinery.yaml", extra_args=["--workers", "1"]
        ) as node:
            process, listen = start_collector(config, tmp_path, [node])
            with process:
                trace_ids = send_interleaved(listen)
                assert_delivered_whole(backend, trace_ids)
            assert node.metric("refinery_spans_received_total", protocol="grpc") == (
                TRACES * SPANS_PER_TRACE
            )


def load_balancing(tmp_path: Path, config: Path) -> None:
    """load-balancing.yaml: SDK → Collector → the own ports of two nodes' two workers each: every
    trace to one worker, decided whole there, and no span forwarded between processes."""
    first_ports = [free_ports(2), free_ports(2)]  # worker i of a node listens on port + i
    with RecordingBackend() as backend:
        node_config(tmp_path / "node-a", backend, per_worker=first_ports[0])
        node_config(tmp_path / "node-b", backend, per_worker=first_ports[1])
        with (
            RefineryProcess(tmp_path / "node-a" / "refinery.yaml", workers=2) as node_a,
            RefineryProcess(tmp_path / "node-b" / "refinery.yaml", workers=2) as node_b,
        ):
            workers = [f"127.0.0.1:{p + i}" for p in first_ports for i in range(2)]
            process, listen = start_collector(config, tmp_path, [node_a, node_b], workers)
            with process:
                trace_ids = send_interleaved(listen)
                assert_delivered_whole(backend, trace_ids)
            decided_on: dict[str, list[str]] = {}
            for name, node in (("a", node_a), ("b", node_b)):
                for trace_id in trace_ids:
                    status, body = node.get(f"/api/v1/traces/{trace_id}")
                    if status == 200 and json.loads(body)["decision"] is not None:
                        decided_on.setdefault(trace_id, []).append(name)
            assert all(len(decided_on.get(t, [])) == 1 for t in trace_ids), decided_on
            per_node = [sum(on == [name] for on in decided_on.values()) for name in "ab"]
            assert min(per_node) > 0, f"every trace went to one node: {per_node}"
            for node in (node_a, node_b):
                decided = node.metric("refinery_traces_decided_total")
                assert node.metric("refinery_spans_decided_total") == decided * SPANS_PER_TRACE
                # The tier routed each trace to a worker's own port: nothing crossed processes.
                assert node.metric("refinery_cluster_spans_total", direction="sent") == 0
                for worker in ("0", "1"):
                    assert node.metric("refinery_traces_decided_total", worker=worker) > 0


@pytest.mark.parametrize(
    ("compression", "encoding"), [("zstd", "proto"), ("gzip", "proto"), ("gzip", "json")]
)
def test_the_collectors_otlp_http_exporter(tmp_path: Path, compression: str, encoding: str) -> None:
    """SDK → Collector → its OTLP/HTTP exporter, compressed and encoded as set → refinery_py →
    backend. Bytes from the Collector's own Go encoders, not the ones the tests have: its zstd,
    and its OTLP/JSON (its own key order, IDs in hex, 64-bit integers as strings)."""
    config = tmp_path / "otlphttp.yaml"
    config.write_text(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n"
        "        endpoint: ${env:OTLP_GRPC_LISTEN}\n"
        "processors:\n  batch: {}\n"
        "exporters:\n  otlphttp/refinery:\n    traces_endpoint: ${env:REFINERY_HTTP}\n"
        f"    compression: {compression}\n    encoding: {encoding}\n"
        "service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n"
        "      processors: [batch]\n      exporters: [otlphttp/refinery]\n"
    )
    with RecordingBackend() as backend:
        node_config(tmp_path / "node", backend)
        with RefineryProcess(
            tmp_path / "node" / "refinery.yaml", extra_args=["--workers", "1"]
        ) as node:
            listen = f"127.0.0.1:{free_port()}"
            env = {"OTLP_GRPC_LISTEN": listen, "REFINERY_HTTP": node.http_endpoint}
            name = f"otelcol-otlphttp-{encoding}-{compression}"
            process = collector(config, tmp_path, env, name=name)
            process.wait_for_port(listen)
            with process:
                trace_ids = send_interleaved(listen)
                assert_delivered_whole(backend, trace_ids)
            protocol = "http_json" if encoding == "json" else "http_protobuf"
            assert node.metric("refinery_spans_received_total", protocol=protocol) == (
                TRACES * SPANS_PER_TRACE
            )
            rejected = node.metric("refinery_requests_rejected_total")
            assert not rejected, f"{rejected} requests refused"


SCENARIOS: dict[str, Callable[[Path, Path], None]] = {
    "agent.yaml": agent,
    "load-balancing.yaml": load_balancing,
}
CONFIGS = sorted((REPO / "collector").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_collector_config_carries_traces_to_refinery_and_on(tmp_path: Path, config: Path) -> None:
    scenario = SCENARIOS.get(config.name)
    assert scenario is not None, f"collector/{config.name} has no scenario in this test: add one"
    scenario(tmp_path, config)
