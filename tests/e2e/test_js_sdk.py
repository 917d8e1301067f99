"""The OpenTelemetry JS SDK as the sender: OTLP/HTTP as browsers and Node.js services write it.

The bytes are the JS SDK's own (tests/peers/js, installed by `make test` from the npm registry at
the versions its lock file pins), in both its encodings: JSON (integers as JSON numbers, IDs as
hex, empty `links` lists) and protobuf (its own encoder, not Python's); both carry span `flags`
and come in request bodies sent in chunks with no Content-Length. The default rules must keep
the failed checkout whole and drop the health check, and what reaches the backend must be what
the SDK sent, value types included.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import REPO, RecordingBackend, RefineryProcess, wait_until, write_config

SENDER = REPO / "tests" / "peers" / "js"


def send_with_the_js_sdk(endpoint: str, encoding: str) -> dict[str, str]:
    node = shutil.which("node")
    if node is None or not (SENDER / "node_modules").is_dir():
        raise RuntimeError("the JS sender is not installed: run `make test` (make js-sender)")
    done = subprocess.run(
        [node, str(SENDER / "send.cjs"), endpoint, encoding],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"the JS SDK's export failed:\n{done.stderr}"
    ids: dict[str, str] = json.loads(done.stdout)
    return ids


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_the_js_sdks_traces_are_decided_and_forwarded_as_sent(
    tmp_path: Path, encoding: str
) -> None:
    with RecordingBackend() as backend:
        config = write_config(tmp_path, backend, send_delay="200ms")
        with RefineryProcess(config, REPO / "rules" / "default.yaml") as node:
            ids = send_with_the_js_sdk(node.http_endpoint, encoding)
            wait_until(
                lambda: node.metric("refinery_traces_decided_total") == 2,
                what="both traces decided",
            )
            wait_until(lambda: len(backend.spans()) == 2, what="the checkout's two spans")
            assert node.metric("refinery_traces_decided_total", decision="dropped") == 1
            assert node.metric("refinery_requests_rejected_total") == 0
            assert node.terminate() == 0

    spans = {s.span.name: s for s in backend.spans()}
    assert set(spans) == {"POST /checkout", "charge card"}
    root, child = spans["POST /checkout"], spans["charge card"]
    assert {root.trace_id, child.trace_id} == {ids["checkout"]}
    assert child.span.parent_span_id == root.span.span_id
    assert root.resource == {"service.name": "checkout-js", "customer.id": "acme"}
    assert root.scope == "refinery-py-tests"

    # Every value keeps the type the SDK gave it: a JSON number without a fraction is an int.
    sent = {k: v for k, v in root.attributes.items() if not k.startswith(("meta.", "Sample"))}
    assert sent == {
        "http.route": "/checkout",
        "cart.size": 3,
        "cart.total": 12.5,
        "app.flagged": False,
        "cart.items": root.attributes["cart.items"],
        "cart.quantities": root.attributes["cart.quantities"],
    }
    assert [v.string_value for v in root.attributes["cart.items"].values] == ["book", "pen"]
    assert [v.int_value for v in root.attributes["cart.quantities"].values] == [1, 2]
    assert type(root.attributes["cart.size"]) is int
    (event,) = child.span.events
    assert event.name == "retry"
    assert event.attributes[0].key == "attempt" and event.attributes[0].value.int_value == 2
    assert child.span.status.code == 2 and child.span.status.message == "card declined"
    assert root.span.kind == 2 and child.span.kind == 3
    assert root.span.flags == child.span.flags == 0x101  # sampled, parent-is-remote known
    assert child.span.end_time_unix_nano > child.span.start_time_unix_nano > 1.7e18

    for span in (root, child):
        assert span.attributes["SampleRate"] == 1
        assert span.attributes["meta.refinery.reason"] == "rules/trace/keep errors"
