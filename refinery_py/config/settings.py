"""The config file (YAML, snake_case keys) as frozen settings, and the functions that load it.

Each key is declared once with `option()`: its YAML name, one-sentence doc, default and limits.
The loader validates against that and reference docs can be generated from it. An empty or
absent file means every default: listeners on 127.0.0.1, rules from `rules/default.yaml`, kept
traces into `./refinery-data/traces.db`, no upstream exporter.
"""

# option() returns a dataclasses.field(), which ruff cannot see through: RUF009 is a false alarm.

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from refinery_py.config.addresses import (
    EndpointText,
    HostPort,
    parse_endpoint_text,
    parse_host_port,
)
from refinery_py.config.cluster_settings import (
    ClusterSettings,
    RedisMembershipSettings,
    check_cluster,
    check_redis,
)
from refinery_py.config.export_settings import OtlpExportSettings, check_otlp_export
from refinery_py.config.loader import Reader, TextParser
from refinery_py.config.mapping_view import MappingView
from refinery_py.config.problems import ConfigError, Problem, has_errors, sorted_problems
from refinery_py.config.schema_fields import option
from refinery_py.config.security_checks import check_security, check_security_files, resolve
from refinery_py.config.security_settings import (
    AuthSettings,
    TlsSettings,
    TokenSettings,
    check_auth,
    check_tls,
    check_token,
)
from refinery_py.config.units import ByteSize, Seconds, format_duration
from refinery_py.config.yaml_tree import compose, line_of

MiB = 1024**2
GiB = 1024**3


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenSettings:
    """Where refinery_py accepts connections."""

    otlp_grpc: HostPort = option(
        "otlp_grpc", "Address (host:port) of the OTLP/gRPC receiver.", default="127.0.0.1:4317"
    )
    otlp_http: HostPort = option(
        "otlp_http",
        "Address (host:port) of the OTLP/HTTP receiver (protobuf and JSON on /v1/traces).",
        default="127.0.0.1:4318",
    )
    api: HostPort = option(
        "api",
        "Address (host:port) of the HTTP API: health, metrics, trace queries.",
        default="127.0.0.1:8088",
    )
    otlp_grpc_per_worker: HostPort | None = option(
        "otlp_grpc_per_worker",
        "An OTLP/gRPC port for each worker (worker i on port + i), for a front that routes by "
        "trace ID (the Collector's load_balancing exporter): spans arriving there are the "
        "worker's own and are never forwarded. null: none.",
        default=None,
    )
    otlp_http_per_worker: HostPort | None = option(
        "otlp_http_per_worker",
        "Like otlp_grpc_per_worker, for OTLP/HTTP. null: none.",
        default=None,
    )
    peer: HostPort = option(
        "peer",
        "Address (host:port) of this node's peer door, where other cluster members send the "
        "spans this node owns; with several workers, worker i listens on port + i. Only opened "
        "when a cluster is configured.",
        default="127.0.0.1:4319",
    )
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TracesSettings:
    """When a trace is complete enough to decide, and how long decisions are remembered."""

    send_delay: Seconds = option(
        "send_delay",
        "How long to wait after the root span arrives before deciding, for stragglers.",
        default=Seconds(2.0),
        minimum=0,
    )
    trace_timeout: Seconds = option(
        "trace_timeout",
        "How long after its first span a trace is decided even without a root span.",
        default=Seconds(60.0),
        exclusive_minimum=0,
    )
    span_limit: int = option(
        "span_limit",
        "A trace with more spans than this is decided at once.",
        default=32000,
        minimum=1,
    )
    decision_cache_ttl: Seconds = option(
        "decision_cache_ttl",
        "How long a decision is remembered for late spans; 0 means 2 × trace_timeout.",
        default=Seconds(0.0),
        minimum=0,
    )
    decision_cache_max_memory: ByteSize = option(
        "decision_cache_max_memory",
        "Memory the decision cache may use before it forgets the oldest decisions.",
        default=ByteSize(256 * MiB),
        exclusive_minimum=0,
    )
    max_memory: ByteSize = option(
        "max_memory",
        "Memory for buffered traces before the largest are decided early; 0 means half of RAM.",
        default=ByteSize(0),
        minimum=0,
    )
    refusal_wait: Seconds = option(
        "refusal_wait",
        "Longest a decision waits past its deadline for spans the node refused while decisions"
        " ran behind or a peer's queue was full (they come back after the retry hint); 0 never"
        " waits.",
        default=Seconds(10.0),
        minimum=0,
    )
    line: int = 0

    @property
    def effective_decision_cache_ttl(self) -> Seconds:
        """`decision_cache_ttl`, with 0 resolved to its default of twice the trace timeout."""
        return self.decision_cache_ttl or Seconds(2 * self.trace_timeout)

    def memory_budget(self, machine_memory: int) -> int:
        """`max_memory` in bytes, with 0 resolved to half of `machine_memory`."""
        return self.max_memory or machine_memory // 2


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsSettings:
    """Bounds on what a sender may ask of a node."""

    max_request_bytes: ByteSize = option(
        "max_request_bytes",
        "Largest OTLP request accepted (gRPC RESOURCE_EXHAUSTED / HTTP 413 above it).",
        default=ByteSize(16 * MiB),
        exclusive_minimum=0,
    )
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StressReliefSettings:
    """What a node does when it cannot keep up: push back, or sample on arrival."""

    mode: str = option(
        "mode",
        "backpressure: refuse new requests (429 / RESOURCE_EXHAUSTED) while decisions run behind "
        "or the buffer is over its budget. relieve: after activate_after of that, decide each new "
        "trace on arrival by its trace ID's hash at sample_rate, without buffering it.",
        default="backpressure",
        choices=("backpressure", "relieve"),
    )
    sample_rate: int = option(
        "sample_rate",
        "The rate relief keeps traces at; 0 means the default target's own rate (its "
        "SampleRate or GoalSampleRate, its last condition-less rule's), else 100.",
        default=0,
        minimum=0,
    )
    activate_after: Seconds = option(
        "activate_after",
        "How long the node must be unable to keep up before relief starts.",
        default=Seconds(5.0),
        minimum=0,
    )
    deactivate_after: Seconds = option(
        "deactivate_after",
        "How long the node must be well within its limits (half the decision lag limit, half "
        "the memory budget) before relief stops.",
        default=Seconds(30.0),
        minimum=0,
    )
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportSettings:
    """Where kept traces go besides the embedded store."""

    otlp: OtlpExportSettings | None = option(
        "otlp",
        "The upstream OTLP backend; absent means kept traces are not forwarded.",
        default=None,
    )
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    """The embedded SQLite store of kept traces that the query API reads."""

    path: str | None = option(
        "path",
        "SQLite file for kept traces; null turns the embedded store off.",
        default="./refinery-data/traces.db",
    )
    retention: Seconds = option(
        "retention",
        "How long kept traces stay in the store.",
        default=Seconds(86400.0),
        exclusive_minimum=0,
    )
    max_size: ByteSize = option(
        "max_size",
        "Size of the store file beyond which the oldest traces are deleted.",
        default=ByteSize(GiB),
        exclusive_minimum=0,
    )
    queue_max_bytes: ByteSize = option(
        "queue_max_bytes",
        "Kept traces waiting for the store's writer thread, in bytes (shared by a node's workers);"
        " past it, traces are dropped from the store and counted, never from the export.",
        default=ByteSize(64 * MiB),
        exclusive_minimum=0,
    )
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSettings:
    """Recording incoming traffic to files that `refinery-py rules test` replays."""

    dir: str | None = option(
        "dir",
        "Directory for OTLP JSON lines files of every accepted request; null records nothing.",
        default=None,
    )
    max_file_size: ByteSize = option(
        "max_file_size",
        "Size at which the current recording file is closed and a new one started.",
        default=ByteSize(64 * MiB),
        exclusive_minimum=0,
    )
    max_total_size: ByteSize = option(
        "max_total_size",
        "Total size of recording files kept; the oldest files are deleted beyond it.",
        default=ByteSize(GiB),
        exclusive_minimum=0,
    )
    queue_max_bytes: ByteSize = option(
        "queue_max_bytes",
        "Memory for requests waiting to be written; when full, requests are not recorded "
        "(counted), never delayed.",
        default=ByteSize(64 * MiB),
        exclusive_minimum=0,
    )
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings:
    """The HTTP API on `listen.api`."""

    token: str | None = option(
        "token",
        "Bearer token the query API requires; null leaves it open (health and metrics stay open).",
        default=None,
    )
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingSettings:
    """refinery_py's own log output."""

    level: str = option(
        "level",
        "Least severe log level written.",
        default="info",
        choices=("debug", "info", "warning", "error"),
    )
    format: str = option(
        "format",
        "Log line format: readable text or one JSON object per line.",
        default="text",
        choices=("text", "json"),
    )
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The whole config file."""

    listen: ListenSettings = option(
        "listen", "Network addresses to listen on.", default_factory=ListenSettings
    )
    rules_file: str | None = option(
        "rules_file",
        "The rules file (Refinery v2 format); null or a missing file keeps every trace.",
        default="rules/default.yaml",
    )
    customer_fields: tuple[str, ...] = option(
        "customer_fields",
        "Fields naming a trace's customer; the first present on the root span, else any span, "
        "else the resource, wins.",
        default=("customer.id",),
    )
    traces: TracesSettings = option(
        "traces", "Trace completion and decision memory.", default_factory=TracesSettings
    )
    limits: LimitsSettings = option(
        "limits", "Bounds on incoming requests.", default_factory=LimitsSettings
    )
    export: ExportSettings = option(
        "export", "Upstream export of kept traces.", default_factory=ExportSettings
    )
    store: StoreSettings = option(
        "store", "The embedded store of kept traces.", default_factory=StoreSettings
    )
    api: ApiSettings = option("api", "The HTTP API.", default_factory=ApiSettings)
    record: RecordSettings = option(
        "record", "Recording of incoming traffic for replays.", default_factory=RecordSettings
    )
    dry_run: bool = option(
        "dry_run",
        "Keep every trace and only mark each span with what the rules would have done "
        "(meta.refinery.dryrun.kept, meta.refinery.dryrun.sample_rate).",
        default=False,
    )
    logging: LoggingSettings = option(
        "logging", "refinery_py's own logging.", default_factory=LoggingSettings
    )
    stress_relief: StressReliefSettings = option(
        "stress_relief",
        "Under sustained overload: backpressure (default) or sampling on arrival.",
        default_factory=StressReliefSettings,
    )
    cluster: ClusterSettings = option(
        "cluster",
        "Several nodes sampling as one (default: a node on its own).",
        default_factory=ClusterSettings,
    )
    tls: TlsSettings = option(
        "tls",
        "TLS on the OTLP doors, the API and the peer door (default: none).",
        default_factory=TlsSettings,
    )
    auth: AuthSettings = option(
        "auth",
        "Tokens the OTLP doors require of senders (default: none).",
        default_factory=AuthSettings,
    )
    source: str = field(default="", compare=False)
    """The file the settings came from ("" for built-in defaults)."""

    def rules_path(self) -> Path | None:
        """`rules_file`, a relative one read relative to the config file; None when null."""
        if self.rules_file is None:
            return None
        return self.file_path(self.rules_file)

    def file_path(self, file: str) -> Path:
        """A file the config names: a relative path is relative to the config file's folder."""
        return resolve(self.source, file)


def _check_traces(reader: Reader, view: MappingView) -> None:
    """A decision cache shorter than 2 × trace_timeout forgets decisions late spans still need."""
    ttl, timeout = view.get("decision_cache_ttl"), view.get("trace_timeout")
    if isinstance(ttl, float) and isinstance(timeout, float) and 0 < ttl < 2 * timeout:
        reader.error(
            view.line("decision_cache_ttl"),
            f"{view.path_of('decision_cache_ttl')} ({format_duration(ttl)}) must be at least "
            f"2 × trace_timeout ({format_duration(2 * timeout)}), or 0 for that default",
        )
        view.fail("decision_cache_ttl")


_CHECKS = {
    TracesSettings: _check_traces,
    OtlpExportSettings: check_otlp_export,
    ClusterSettings: check_cluster,
    RedisMembershipSettings: check_redis,
    TlsSettings: check_tls,
    TokenSettings: check_token,
    AuthSettings: check_auth,
}
_PARSERS: dict[object, TextParser] = {
    HostPort: parse_host_port,
    EndpointText: parse_endpoint_text,
}


def read_settings(
    text: str, source: str, *, check_files: bool = False
) -> tuple[Settings | None, list[Problem]]:
    """Parse config text: the settings (None if there are errors) and every problem found.

    With `check_files`, files the config names are looked for too (relative to `source`).
    """
    root, problems = compose(text, source)
    if problems:
        return None, problems
    reader = Reader(source, checks=_CHECKS, parsers=_PARSERS)
    settings = reader.read_document(root, Settings)
    if isinstance(settings, Settings):
        check_security(reader, settings, root)
    if isinstance(settings, Settings) and check_files:
        _check_rules_file(reader, replace(settings, source=source), root)
        check_security_files(reader, replace(settings, source=source), root)
    problems = sorted_problems(reader.problems)
    if not isinstance(settings, Settings) or has_errors(problems):
        return None, problems
    return replace(settings, source=source), problems


def missing_default_rules_message(path: Path) -> str:
    return (
        f"rules_file is not set and its default, {path}, does not exist: every trace will be "
        "KEPT (set rules_file to your rules, or to null to keep every trace on purpose)"
    )


def _check_rules_file(reader: Reader, settings: Settings, root: yaml.Node | None) -> None:
    """A rules file the config names must exist; a missing default is worth a loud warning."""
    path = settings.rules_path()
    if path is None or path.exists():
        return
    entry = None
    if isinstance(root, yaml.MappingNode):
        entry = next(
            (key for key, _ in root.value if getattr(key, "value", None) == "rules_file"), None
        )
    if entry is not None:
        reader.error(line_of(entry), f"rules_file: {path} does not exist")
    else:
        reader.warning(1, missing_default_rules_message(path))


def parse_settings(text: str, source: str) -> Settings:
    """Parse config text; raises ConfigError listing every problem if there is any error."""
    settings, problems = read_settings(text, source)
    if settings is None:
        raise ConfigError(problems)
    return settings


def load_settings(path: str | Path | None) -> Settings:
    """Load the config file at `path`; None means the built-in defaults."""
    if path is None:
        return Settings()
    settings, problems = _read_file(path, check_files=False)
    if settings is None:
        raise ConfigError(problems)
    return settings


def check_config_file(path: str | Path) -> list[Problem]:
    """Every problem (errors and warnings) in a config file; an empty list means it is clean."""
    return _read_file(path, check_files=True)[1]


def _read_file(path: str | Path, *, check_files: bool) -> tuple[Settings | None, list[Problem]]:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return None, [Problem(source, 0, f"cannot read the config file: {exc.strerror or exc}")]
    except UnicodeDecodeError:
        return None, [Problem(source, 0, "the config file is not valid UTF-8")]
    return read_settings(text, source, check_files=check_files)


__all__ = [
    "ApiSettings",
    "AuthSettings",
    "ClusterSettings",
    "EndpointText",
    "ExportSettings",
    "HostPort",
    "LimitsSettings",
    "ListenSettings",
    "LoggingSettings",
    "OtlpExportSettings",
    "RecordSettings",
    "RedisMembershipSettings",
    "Settings",
    "StoreSettings",
    "StressReliefSettings",
    "TlsSettings",
    "TokenSettings",
    "TracesSettings",
    "check_config_file",
    "load_settings",
    "parse_settings",
    "read_settings",
]
