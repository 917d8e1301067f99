"""Real peers for end-to-end tests: the OpenTelemetry Collector, Jaeger and Prometheus.

Each runs as a child process on loopback ports chosen here, its output kept in a log file that
failure messages quote. `make test` builds the Collector and Jaeger (`make peers`) and installs
Debian's prometheus package; a test run without them fails and says so rather than skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.e2e.harness import REPO

PEERS_BIN = REPO / "bench" / "peers" / "bin"
COLLECTOR = PEERS_BIN / "otelcol-bench"
JAEGER = PEERS_BIN / "jaeger"
JAEGER_CONFIG = REPO / "bench" / "peers" / "jaeger" / "config.yaml"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=1):
        return True


def require(path: Path | str, how: str) -> str:
    """The executable at `path` (or on PATH); fail, saying `how` to get it, when it is missing."""
    found = shutil.which(str(path))
    if found is None:
        raise AssertionError(f"{path} is missing: {how}")
    return found


def http_status(url: str, timeout: float = 10) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def http_json(url: str, data: bytes | None = None, timeout: float = 10) -> tuple[int, Any]:
    """GET (or POST `data`) and decode the JSON answer, whatever the status."""
    request = urllib.request.Request(url, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body or b"null")
        except ValueError:
            return error.code, body.decode(errors="replace")


class PeerProcess:
    """A peer program in a child process, its output in `log_path`."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            list(command),
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Poll `condition`; fail with this peer's log if it exits or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, ValueError):
                if condition():
                    return
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.process.returncode}) before {what}:\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}; {self.name}'s log:\n" + self.log_tail()
                )
            time.sleep(0.1)

    def started(self, condition: Callable[[], bool], what: str) -> None:
        """Wait for start-up; if it never comes, stop the process before failing."""
        try:
            self.wait_until(condition, what)
        except BaseException:
            self.stop()
            raise

    def wait_for_port(self, address: str) -> None:
        self.started(lambda: port_open(address), f"{self.name} to listen on {address}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def collector(config: Path, log_dir: Path, env: dict[str, str], name: str) -> PeerProcess:
    """The Collector `make peers` builds, running `config` (its OTLP/gRPC port in `env`).

    The Collector's own metrics would listen on :8888; two Collectors on one machine cannot
    both, so a second config file merged over `config` turns them off.
    """
    binary = require(COLLECTOR, "run `make peers` (it builds the Collector)")
    quiet = log_dir / f"{name}-no-self-metrics.yaml"
    quiet.write_text("service:\n  telemetry:\n    metrics:\n      level: none\n")
    return PeerProcess(
        name,
        [binary, "--config", f"file:{config}", "--config", f"file:{quiet}"],
        log_dir,
        env,
    )


class Jaeger(PeerProcess):
    """Jaeger v2 with bench/peers/jaeger/config.yaml (in memory), every port moved to a free one."""

    def __init__(self, log_dir: Path) -> None:
        binary = require(JAEGER, "run `make peers` (it builds Jaeger)")
        self.otlp_grpc = f"127.0.0.1:{free_port()}"
        self.query = f"http://127.0.0.1:{free_port()}"
        env = {
            "JAEGER_OTLP_GRPC": self.otlp_grpc,
            "JAEGER_OTLP_HTTP": f"127.0.0.1:{free_port()}",
            "JAEGER_QUERY_HTTP": self.query.removeprefix("http://"),
            "JAEGER_QUERY_GRPC": f"127.0.0.1:{free_port()}",
        }
        super().__init__("jaeger", [binary, "--config", str(JAEGER_CONFIG)], log_dir, env)
        self.started(lambda: http_status(self.query + "/api/services") == 200, "Jaeger's API")
        self.started(lambda: port_open(self.otlp_grpc), "Jaeger's OTLP receiver")

    def trace(self, trace_id: str) -> tuple[int, Any]:
        """`GET /api/v3/traces/{id}`: the trace as OTLP JSON (200), or 404."""
        return http_json(f"{self.query}/api/v3/traces/{trace_id}")


class Prometheus(PeerProcess):
    """Debian's prometheus, on a free port with its own config and data directory."""

    def __init__(self, directory: Path, config: str) -> None:
        binary = require("prometheus", "run `make test` (it installs Debian's prometheus package)")
        self.url = f"http://127.0.0.1:{free_port()}"
        (directory / "prometheus.yml").write_text(config)
        super().__init__(
            "prometheus",
            [
                binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
                "--log.level=warn",
            ],
            directory,
        )
        self.started(lambda: http_status(self.url + "/-/ready") == 200, "Prometheus ready")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (empty when it returns no data)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, body = http_json(url)
        if status != 200 or body.get("status") != "success":
            raise AssertionError(f"query failed ({status}): {expr}\n{body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def api(self, path: str) -> Any:
        status, body = http_json(self.url + path)
        assert status == 200, f"{path}: {status} {body}"
        return body["data"]
