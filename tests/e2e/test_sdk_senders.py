"""Other SDKs as senders: OTLP/HTTP as JS and Java services (and browsers) write it.

The bytes are those SDKs' own, installed by `make test` at the versions their project files pin:

- the OpenTelemetry JS SDK (tests/peers/js, npm), in both its encodings: JSON (integers as JSON
  numbers, IDs as hex, empty `links` lists) and protobuf (its own encoder, which writes default
  values out); bodies sent in chunks with no Content-Length;
- the OpenTelemetry Java SDK (tests/peers/java, Maven Central), protobuf from each of its two
  marshalers (the low-allocation one of `MemoryMode.REUSABLE_DATA` and the immutable one), gzip
  or not.

Each sends a failed checkout and a health check. The default rules must keep the checkout whole
and drop the health check, and what reaches the backend must be what the SDK sent, value types,
span flags and events included.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import REPO, RecordingBackend, RefineryProcess, wait_until, write_config

PEERS = REPO / "tests" / "peers"

SENDERS = {
    "js-json": ("node", ["js/send.cjs", "{endpoint}", "json"], "js/node_modules"),
    "js-protobuf": ("node", ["js/send.cjs", "{endpoint}", "protobuf"], "js/node_modules"),
    "java-reusable-gzip": (
        "java",
        ["-cp", "java/lib/*", "java/Send.java", "{endpoint}", "reusable", "gzip"],
        "java/lib",
    ),
    "java-immutable": (
        "java",
        ["-cp", "java/lib/*", "java/Send.java", "{endpoint}", "immutable", "none"],
        "java/lib",
    ),
}

SDK_FLAGS = {"js": 0x101, "java": 0x103}
"""Span flags by SDK: sampled, 0x100 whether the parent is remote is known, and (Java) 0x2 the
trace ID is random."""


def send_with(sender: str, endpoint: str) -> dict[str, str]:
    """Run `sender`; the trace IDs it printed."""
    program, arguments, installed = SENDERS[sender]
    found = shutil.which(program)
    if found is None or not (PEERS / installed).is_dir():
        raise RuntimeError(
            f"{sender} is not installed: run `make test` (make js-sender java-sender)"
        )
    done = subprocess.run(
        [found, *(a.format(endpoint=endpoint) for a in arguments)],
        cwd=PEERS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{sender}'s export failed:\n{done.stderr}"
    ids: dict[str, str] = json.loads(done.stdout)
    return ids


@pytest.mark.parametrize("sender", SENDERS)
def test_another_sdks_traces_are_decided_and_forwarded_as_sent(tmp_path: Path, sender: str) -> None:
    with RecordingBackend() as backend:
        config = write_config(tmp_path, backend, send_delay="200ms")
        with RefineryProcess(config, REPO / "rules" / "default.yaml") as node:
            ids = send_with(sender, node.http_endpoint)
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
    service = "checkout-js" if sender.startswith("js") else "checkout-java"
    assert {k: root.resource[k] for k in ("service.name", "customer.id")} == {
        "service.name": service,
        "customer.id": "acme",
    }
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
    # The flags as each SDK set them (Java adds: the trace ID is random).
    flags = SDK_FLAGS[sender.split("-", maxsplit=1)[0]]
    assert root.span.flags == child.span.flags == flags
    assert child.span.end_time_unix_nano > child.span.start_time_unix_nano > 1.7e18

    for span in (root, child):
        assert span.attributes["SampleRate"] == 1
        assert span.attributes["meta.refinery.reason"] == "rules/trace/keep errors"
        assert span.span.trace_state == "ot=th:0"  # the same rate, as OpenTelemetry says it
