"""The embedded store end to end: OTel SDK → `refinery-py serve` (store on) → query API and CLI.

Keep/drop for the sampled rule is a hash of the trace ID, so the test knows exactly which traces
the store must hold, per customer, and what their reweighted totals must be.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.trace import Status, StatusCode

from refinery_py.decide.hashing import keep_for_rate
from tests.e2e.harness import REPO, RefineryProcess, wait_until
from tests.e2e.sdk import trace_id_of, tracer_provider

RULES = """\
RulesVersion: 2
Samplers:
  __default__:
    RulesBasedSampler:
      Rules:
        - Name: keep errors
          Conditions:
            - Field: error
              Operator: exists
          SampleRate: 1
        - Name: drop health checks
          Drop: true
          Conditions:
            - Field: root.http.route
              Operator: "="
              Value: /healthz
        - Name: sample the rest
          SampleRate: 10
"""
"""The test's own policy (rate 10 is a hash of the trace ID), so it can predict every decision."""
TOKEN = "e2e-token"
CUSTOMERS = ("cust-a", "cust-b", "cust-c", None)


def write_store_config(directory: Path, store: Path) -> Path:
    path = directory / "refinery-store.yaml"
    path.write_text(
        "\n".join(
            [
                "listen:",
                "  otlp_grpc: 127.0.0.1:0",
                "  otlp_http: 127.0.0.1:0",
                "  api: 127.0.0.1:0",
                "traces:",
                "  send_delay: 200ms",
                "  trace_timeout: 5s",
                "store:",
                f"  path: {store}",
                "  retention: 1h",
                "  max_size: 64MiB",
                "api:",
                f"  token: {TOKEN}",
            ]
        )
        + "\n"
    )
    return path


def api_get(node: RefineryProcess, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    request = urllib.request.Request(node.api + path)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def make_trace(tracer: trace_api.Tracer, kind: str, customer: str | None, index: int) -> str:
    route = "/healthz" if kind == "health" else f"/api/orders/{index % 3}"
    with tracer.start_as_current_span(f"GET {route}", kind=trace_api.SpanKind.SERVER) as root:
        root.set_attribute("http.route", route)
        if customer is not None:
            root.set_attribute("customer.id", customer)
        for child_index in range(3):
            with tracer.start_as_current_span(f"db.query {child_index}") as child:
                if kind == "error" and child_index == 1:
                    child.set_status(Status(StatusCode.ERROR, "connection reset"))
        return trace_id_of(root)


def query_cli(*argv: str) -> Any:
    completed = subprocess.run(
        [sys.executable, "-m", "refinery_py", "query", *argv, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(completed.stdout)


def store_rows_reported(node: RefineryProcess) -> float:
    """`refinery_store_rows` summed over the node's workers (one reports the shared file)."""
    return node.metric("refinery_store_rows")


def test_kept_traces_are_stored_and_queryable_per_customer(tmp_path: Path) -> None:
    store = tmp_path / "data" / "traces.db"
    config = write_store_config(tmp_path, store)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    traces: dict[str, tuple[str, str | None]] = {}
    with RefineryProcess(config, rules) as node:
        with tracer_provider("grpc", node.grpc_endpoint) as provider:
            tracer = provider.get_tracer("e2e")
            for index in range(120):
                customer = CUSTOMERS[index % 4]
                step = index // 4 % 10  # every customer gets every kind
                kind = "error" if step == 3 else "health" if step == 7 else "plain"
                traces[make_trace(tracer, kind, customer, index)] = (kind, customer)
            provider.force_flush()

            def kept(trace_id: str) -> bool:
                kind = traces[trace_id][0]
                return kind == "error" or (kind == "plain" and keep_for_rate(trace_id, 10))

            kept_ids = {t for t in traces if kept(t)}
            wait_until(
                lambda: node.metric("refinery_traces_decided_total") == len(traces),
                what="every trace decided",
            )
            wait_until(
                lambda: node.metric("refinery_store_writes_total") == len(kept_ids),
                what="kept traces stored",
            )

            # A late span of a kept trace joins its stored trace; no second row appears.
            late_target = next(t for t in kept_ids if traces[t][0] == "error")
            late_parent = trace_api.NonRecordingSpan(
                trace_api.SpanContext(
                    int(late_target, 16),
                    0x1234,
                    is_remote=True,
                    trace_flags=trace_api.TraceFlags(1),
                )
            )
            tracer.start_span("late work", context=trace_api.set_span_in_context(late_parent)).end()
            provider.force_flush()
        wait_until(
            lambda: node.metric("refinery_store_writes_total", kind="append") == 1,
            what="late span appended",
        )

        status, body = api_get(node, "/api/v1/traces", token=None)
        assert (status, "bearer token" in body["error"]) == (401, True)
        assert node.get("/metrics")[0] == 200 and node.get("/ready")[0] == 200

        for customer in CUSTOMERS:
            name = customer or ""
            expected = {t for t in kept_ids if traces[t][1] == customer}
            assert expected, "every customer has kept traces"
            status, body = api_get(node, f"/api/v1/traces?customer={name}&limit=1000")
            assert status == 200
            listed = body["traces"]
            assert {t["trace_id"] for t in listed} == expected
            assert {t["customer"] for t in listed} == {name}
            for item in listed:
                kind = traces[item["trace_id"]][0]
                assert item["sample_rate"] == (1 if kind == "error" else 10)
                assert item["service"] == "shop"
                assert item["name"].startswith("GET /api/orders/")
            status, summary = api_get(node, f"/api/v1/customers/{name}/summary")
            assert status == 200
            errors = sum(1 for t in expected if traces[t][0] == "error")
            assert summary["kept_traces"] == len(expected)
            assert summary["estimated_traces"] == errors + 10 * (len(expected) - errors)
            assert summary["estimated_errors"] == errors
            assert summary["top_errors"][0]["name"] == "db.query 1"
            assert summary["top_errors"][0]["message"] == "connection reset"

        status, detail = api_get(node, f"/api/v1/traces/{late_target}")
        assert status == 200
        assert detail["decision"] == {
            "kept": True,
            "sample_rate": 1,
            "reason": "rules/trace/keep errors",
            "send_reason": "trace_send_got_root",
        }
        assert len(detail["spans"]) == 5
        assert "late work" in {span["name"] for span in detail["spans"]}
        for span in detail["spans"]:
            resource = {a["key"]: a["value"] for a in span["resource"]["attributes"]}
            assert resource["service.name"] == {"stringValue": "shop"}
        health = next(t for t, (kind, _) in traces.items() if kind == "health")
        status, dropped = api_get(node, f"/api/v1/traces/{health}")
        assert status == 200
        assert dropped["decision"]["kept"] is False
        assert dropped["decision"]["reason"] == "rules/trace/drop health checks"
        assert dropped["spans"] == []
        assert api_get(node, "/api/v1/traces/" + "ab" * 16)[0] == 404

        errors_a = {t for t in kept_ids if traces[t] == ("error", "cust-a")}
        from_cli = query_cli(
            "traces",
            "--customer",
            "cust-a",
            "--errors",
            "--since",
            "1h",
            "--api",
            node.api,
            "--token",
            TOKEN,
        )
        assert errors_a
        assert {t["trace_id"] for t in from_cli["traces"]} == errors_a
        # The file's rows, recounted at each retention pass (1 s).
        wait_until(
            lambda: store_rows_reported(node) == len(kept_ids),
            what="the file's rows reported",
        )
        assert node.terminate() == 0

    # After a clean shutdown the file answers the same questions without a server.
    summary_a = query_cli("summary", "cust-a", "--store", str(store))
    expected_a = {t for t in kept_ids if traces[t][1] == "cust-a"}
    assert summary_a["kept_traces"] == len(expected_a)
    assert "storing kept traces in" in "".join(node.log)
