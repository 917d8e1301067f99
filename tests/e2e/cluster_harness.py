"""Real clusters on loopback: a Redis server, node configs, and traffic spread over the nodes."""

from __future__ import annotations

import http.client
import random
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.harness import ReceivedSpan, RecordingBackend, RefineryProcess, wait_until
from tests.otlp_builders import request, span


class RedisServer:
    """`redis-server` (Debian's package; `make test` installs it) on a Unix socket in `directory`.

    A socket path instead of a port: nothing to pick, nothing another test can take.
    """

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test`, which installs it")
        self.socket = directory / "redis.sock"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.socket.exists, 10, "redis-server to listen")

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(10)


def write_node_config(
    directory: Path,
    name: str,
    backend: RecordingBackend,
    cluster: Sequence[str],
    *,
    peer_port: int = 0,
    send_delay: str = "500ms",
    trace_timeout: str = "30s",
) -> Path:
    """A node's config: OS-chosen public ports, a peer port, a `cluster:` section (YAML lines)."""
    path = directory / f"{name}.yaml"
    lines = [
        "listen:",
        "  otlp_grpc: 127.0.0.1:0",
        "  otlp_http: 127.0.0.1:0",
        "  api: 127.0.0.1:0",
        f"  peer: 127.0.0.1:{peer_port}",
        "traces:",
        f"  send_delay: {send_delay}",
        f"  trace_timeout: {trace_timeout}",
        "store:",
        f"  path: {directory / name}.db",
        "export:",
        "  otlp:",
        f"    endpoint: {backend.endpoint}",
        "    protocol: grpc",
        "    retry_initial_interval: 100ms",
        "cluster:",
        *(f"  {line}" for line in cluster),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def address_of(node: RefineryProcess) -> str:
    return node.http_endpoint.removeprefix("http://").removesuffix("/v1/traces")


def post(address: str, body: bytes) -> int:
    """One OTLP/HTTP request on its own connection; 0 when the node cannot be reached."""
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


@dataclass
class SpreadTraffic:
    """Traces whose spans are sent one by one to random nodes (root last), like services behind
    a plain load balancer; a refused or unreachable node is skipped, as a client would retry
    elsewhere."""

    spans_per_trace: int = 6
    seed: int = 7
    first_trace: int = 1
    sent: dict[str, set[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._next_trace = self.first_trace

    def new_trace(self) -> int:
        number = self._next_trace
        self._next_trace += 1
        self.sent[f"{number:032x}"] = set()
        return number

    def send_span(self, trace: int, span_number: int, nodes: Sequence[str]) -> None:
        """Span `span_number` of `trace` (1 is the root; others are its children)."""
        parent = None if span_number == 1 else 1
        body = request(
            span(trace, span_number, parent, attrs={"customer.id": f"c{trace % 5}"})
        ).SerializeToString()
        candidates = list(nodes)
        self._rng.shuffle(candidates)
        for address in candidates:
            if post(address, body) == 200:
                self.sent[f"{trace:032x}"].add(span_number)
                return
        raise AssertionError(f"no node took span {span_number} of trace {trace}")


def check_whole_once(backend: RecordingBackend, traffic: SpreadTraffic) -> None:
    """Every trace arrived once, whole, from one decision, with the root's span count right."""
    received = backend.by_trace()
    problems: list[str] = []
    for trace_id, span_numbers in traffic.sent.items():
        spans: list[ReceivedSpan] = received.get(trace_id, [])
        got = sorted(int.from_bytes(s.span.span_id, "big") for s in spans)
        if got != sorted(span_numbers):
            problems.append(f"{trace_id}: sent {sorted(span_numbers)}, received {got}")
            continue
        reasons = {s.attributes["meta.refinery.send_reason"] for s in spans}
        roots = [s for s in spans if not s.span.parent_span_id]
        if reasons != {"trace_send_got_root"}:
            problems.append(f"{trace_id}: decided as {sorted(reasons)}")
        elif [r.attributes.get("meta.span_count") for r in roots] != [len(span_numbers)]:
            problems.append(f"{trace_id}: root says {roots[0].attributes.get('meta.span_count')}")
    assert not problems, f"{len(problems)} traces not whole and once:\n" + "\n".join(problems[:20])


def settle(seconds: float) -> None:
    time.sleep(seconds)
