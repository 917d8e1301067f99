"""Hot reload against a running server: applied, rejected, and buffered traces survive."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest
from opentelemetry import trace as trace_api

from tests.e2e.harness import RecordingBackend, RefineryProcess, wait_until, write_config
from tests.e2e.sdk import trace_id_of, tracer_provider


def rules(version: str) -> str:
    return (
        "RulesVersion: 2\nSamplers:\n  __default__:\n    RulesBasedSampler:\n      Rules:\n"
        f"        - Name: keep all {version}\n          SampleRate: 1\n"
    )


def replace_file(path: Path, text: str) -> None:
    """Write the way editors and ConfigMap updates do: a new file renamed over the old one."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def status(node: RefineryProcess) -> dict[str, object]:
    code, body = node.get("/api/v1/rules")
    assert code == 200
    document: dict[str, object] = json.loads(body)
    return document


def post_reload(node: RefineryProcess) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(node.api + "/api/v1/rules/reload", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("workers", [1, 2])
def test_reload_applies_valid_rules_rejects_invalid_and_keeps_buffered_traces(
    tmp_path: Path, workers: int
) -> None:
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(rules("v1"))
    with RecordingBackend() as backend:
        config = write_config(tmp_path, backend, trace_timeout="10m")
        with RefineryProcess(config, rules_path, extra_args=["--workers", str(workers)]) as node:
            first = status(node)
            assert first["source"] == str(rules_path)
            assert first["targets"] == {"__default__": "RulesBased"}

            with tracer_provider("grpc", node.grpc_endpoint) as provider:
                tracer = provider.get_tracer("e2e")
                open_root = tracer.start_span("still running")
                context = trace_api.set_span_in_context(open_root)
                tracer.start_span("child", context=context).end()
                provider.force_flush()
            wait_until(lambda: node.metric("refinery_spans_waiting") == 1, what="buffered")

            # A valid edit is picked up by the file watcher.
            replace_file(rules_path, rules("v2"))
            wait_until(
                lambda: node.metric("refinery_rules_reload_total", outcome="applied") == workers,
                what="watcher reload",
            )
            second = status(node)
            assert second["digest"] != first["digest"]

            # An invalid edit is rejected; the v2 rules stay active.
            replace_file(rules_path, rules("v3").replace("SampleRate: 1", "SampleRate: zero"))
            wait_until(
                lambda: node.metric("refinery_rules_reload_total", outcome="rejected") == workers,
                what="rejected reload",
            )
            assert status(node)["digest"] == second["digest"]
            code, outcome = post_reload(node)
            assert code == 422
            assert outcome["outcome"] == "rejected"
            assert any("SampleRate" in line for line in outcome["errors"])  # type: ignore[union-attr]
            assert any("rules reload (file changed) rejected" in line for line in node.log)

            # A fix applied by SIGHUP; the buffered trace is decided by the newest rules.
            replace_file(rules_path, rules("v3"))
            node.process.send_signal(signal.SIGHUP)
            wait_until(
                lambda: (
                    node.metric("refinery_rules_reload_total", outcome="applied") == 2 * workers
                ),
                what="SIGHUP reload",
            )
            code, outcome = post_reload(node)
            assert (code, outcome["outcome"]) == (200, "unchanged")
            assert node.metric("refinery_spans_waiting") == 1
            assert node.terminate() == 0
        (received,) = backend.by_trace()[trace_id_of(open_root)]
        assert received.attributes["meta.refinery.reason"] == "rules/trace/keep all v3"
        assert received.attributes["meta.refinery.send_reason"] == "trace_send_shutdown"
