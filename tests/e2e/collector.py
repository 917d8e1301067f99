"""The real OpenTelemetry Collector (`make peers` builds it) as a child process, for e2e tests.

Its config is the README's "Point an OpenTelemetry Collector at it" snippet, with the addresses
filled in, so the snippet a user copies is the one the tests run.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.harness import REPO, wait_until

BINARY = REPO / "bench" / "peers" / "bin" / "otelcol-bench"


def readme_collector_config() -> dict[str, Any]:
    """The YAML block under the README's "Point an OpenTelemetry Collector at it"."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Point an OpenTelemetry Collector at it", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert match, "the README's Collector section has a YAML block"
    config: dict[str, Any] = yaml.safe_load(match.group(1))
    return config


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class CollectorProcess:
    """The Collector receiving OTLP/gRPC on a free loopback port and exporting to `endpoint`."""

    def __init__(self, directory: Path, endpoint: str) -> None:
        assert BINARY.exists(), f"{BINARY} is missing: `make peers` builds it (`make test` does)"
        config = readme_collector_config()
        self.port = _free_port()
        config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = f"127.0.0.1:{self.port}"
        (exporter,) = config["exporters"].values()
        exporter["endpoint"] = endpoint
        # Quiet, and no internal metrics listener (its default port would collide).
        config["service"]["telemetry"] = {"logs": {"level": "warn"}, "metrics": {"level": "none"}}
        path = directory / "collector.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log_path = directory / "collector.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(BINARY), "--config", str(path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._listening, 30, "the Collector to listen")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError("the Collector exited:\n" + self.log_path.read_text())
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False

    def log(self) -> str:
        return self.log_path.read_text()

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
