"""Settings of the upstream OTLP exporter (`export.otlp`), and their cross-field checks."""

# option() returns a dataclasses.field(), which ruff cannot see through: RUF009 is a false alarm.

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from refinery_py.config.addresses import EndpointText, endpoint_uses_tls
from refinery_py.config.loader import Reader
from refinery_py.config.mapping_view import MappingView
from refinery_py.config.schema_fields import option
from refinery_py.config.security_settings import check_key_pair
from refinery_py.config.units import ByteSize, Seconds, format_duration
from refinery_py.config.yaml_tree import line_of, mapping_pairs

MiB = 1024**2
# RFC 9110 token characters: what an HTTP header name (and a gRPC metadata key) may contain.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class OtlpExportSettings:
    """An OTLP backend that receives kept traces, batched, compressed and retried."""

    endpoint: EndpointText = option(
        "endpoint",
        "Where to send: host:port for either protocol (HTTP posts to /v1/traces) or an "
        "http:// or https:// URL.",
        required=True,
    )
    protocol: str = option(
        "protocol",
        "OTLP transport: grpc or http (protobuf).",
        default="grpc",
        choices=("grpc", "http"),
    )
    headers: dict[str, str] = option(
        "headers",
        "Extra headers (gRPC metadata) sent with every export, such as an API key.",
        default_factory=dict,
    )
    compression: str = option(
        "compression", "Compression of export requests.", default="gzip", choices=("gzip", "none")
    )
    timeout: Seconds = option(
        "timeout",
        "How long one export request may take.",
        default=Seconds(10.0),
        exclusive_minimum=0,
    )
    batch_max_spans: int = option(
        "batch_max_spans", "Most spans in one export request.", default=8192, minimum=1
    )
    batch_max_bytes: ByteSize = option(
        "batch_max_bytes",
        "Largest encoded export request; bigger batches are split.",
        default=ByteSize(3 * MiB),
        exclusive_minimum=0,
    )
    batch_timeout: Seconds = option(
        "batch_timeout",
        "Longest a kept trace waits for its batch to fill before it is sent anyway. Traces are"
        " decided in ticks (every 50 ms) and a tick's kept traces leave together, with the late"
        " spans and the traces kept on arrival since the last tick, so 0 (send each tick's"
        " traces at once) already batches; raise it to trade latency for fewer requests.",
        default=Seconds(0.0),
        minimum=0,
    )
    queue_max_bytes: ByteSize = option(
        "queue_max_bytes",
        "Memory for traces waiting to be exported; when full, new traces are dropped and counted.",
        default=ByteSize(256 * MiB),
        exclusive_minimum=0,
    )
    retry_initial_interval: Seconds = option(
        "retry_initial_interval",
        "Wait before the first retry of a failed export; it doubles on each further retry.",
        default=Seconds(1.0),
        exclusive_minimum=0,
    )
    retry_max_interval: Seconds = option(
        "retry_max_interval",
        "Longest wait between two retries.",
        default=Seconds(30.0),
        exclusive_minimum=0,
    )
    retry_max_elapsed: Seconds = option(
        "retry_max_elapsed",
        "How long a batch is retried before it is dropped and counted; 0 disables retries.",
        default=Seconds(300.0),
        minimum=0,
    )
    concurrency: int = option(
        "concurrency", "Export requests in flight at once.", default=4, minimum=1
    )
    insecure: bool | None = option(
        "insecure",
        "Send without TLS; defaults to true for host:port and http:// endpoints, and https:// "
        "always uses TLS.",
        default=None,
    )
    ca_file: str | None = option(
        "ca_file",
        "PEM CA certificates the backend's certificate is checked against over TLS; null: the "
        "system's trusted CAs. Re-read when it changes on disk.",
        default=None,
    )
    cert_file: str | None = option(
        "cert_file",
        "PEM client certificate chain presented to the backend (mutual TLS), with key_file; "
        "re-read when it changes on disk.",
        default=None,
    )
    key_file: str | None = option(
        "key_file", "PEM private key of cert_file, unencrypted.", default=None
    )
    spill_dir: str | None = option(
        "spill_dir",
        "Where kept traces that could not be delivered before shutdown (the backend down) are "
        "written, to be sent first at the next start; null drops them (counted).",
        default="./refinery-data/spill",
    )
    spill_max_size: ByteSize = option(
        "spill_max_size",
        "The most the spill directory may hold; past it, what is left is dropped (counted).",
        default=ByteSize(1024 * MiB),
        exclusive_minimum=0,
    )
    line: int = 0

    @property
    def use_tls(self) -> bool:
        """Whether to connect with TLS: the URL scheme decides, else `insecure` (default plain)."""
        from_scheme = endpoint_uses_tls(self.endpoint)
        if from_scheme is not None:
            return from_scheme
        return self.insecure is False


def check_otlp_export(reader: Reader, view: MappingView) -> None:
    """TLS that contradicts the endpoint, retry intervals in the wrong order, bad header names."""
    endpoint = view.values.get("endpoint")
    insecure = view.values.get("insecure")
    if isinstance(endpoint, str) and isinstance(insecure, bool):
        tls = endpoint_uses_tls(endpoint)
        if tls is not None and tls == insecure:
            scheme = "https" if tls else "http"
            reader.error(
                view.line("insecure"),
                f"{view.path_of('insecure')} is {str(insecure).lower()} but the endpoint is "
                f"{scheme}://; drop insecure or change the URL scheme",
            )
            view.fail("insecure")
    _check_tls_files(reader, view)
    initial, longest = view.get("retry_initial_interval"), view.get("retry_max_interval")
    if isinstance(initial, float) and isinstance(longest, float) and initial > longest:
        reader.error(
            view.line("retry_initial_interval"),
            f"{view.path_of('retry_initial_interval')} ({format_duration(initial)}) is longer than "
            f"retry_max_interval ({format_duration(longest)})",
        )
        view.fail("retry_initial_interval")
    headers_node = view.entries["headers"].value_node if view.given("headers") else None
    if isinstance(view.values.get("headers"), dict) and isinstance(headers_node, yaml.MappingNode):
        for key_node, _ in mapping_pairs(headers_node):
            name = str(key_node.value)
            if not _HEADER_NAME.fullmatch(name):
                reader.error(
                    line_of(key_node),
                    f"{view.path_of('headers')}: {name!r} is not a valid header name",
                )
                view.fail("headers")


def _check_tls_files(reader: Reader, view: MappingView) -> None:
    """A client certificate needs its key; TLS files need an export that uses TLS; OTLP/HTTP
    takes TLS from the URL only (as the OTLP exporter specification says)."""
    check_key_pair(reader, view)
    endpoint = view.values.get("endpoint")
    if not isinstance(endpoint, str) or not view.ok("insecure") or not view.ok("protocol"):
        return
    tls = endpoint_uses_tls(endpoint)
    insecure = view.get("insecure")
    if tls is None and insecure is False and view.get("protocol") == "http":
        reader.error(
            view.line("insecure"),
            f"{view.path_of('insecure')}: OTLP/HTTP takes TLS from the URL; write the endpoint "
            "as https://host:port instead",
        )
        view.fail("insecure")
        return
    if tls or (tls is None and insecure is False):
        return
    for attr in ("ca_file", "cert_file", "key_file"):
        if view.get(attr) is not None:
            reader.error(
                view.line(attr),
                f"{view.path_of(attr)} needs TLS, but this export sends in plain text: use an "
                "https:// endpoint (or, for gRPC, host:port with insecure: false)",
            )
            view.fail(attr)
            return
