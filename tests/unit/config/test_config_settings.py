"""The config file: defaults, every key, and every kind of mistake reported with its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from refinery_py.config.export_settings import OtlpExportSettings
from refinery_py.config.problems import ConfigError
from refinery_py.config.settings import (
    Settings,
    check_config_file,
    load_settings,
    parse_settings,
    read_settings,
)

MiB = 1024**2

EVERY_KEY = """\
listen:
  otlp_grpc: 0.0.0.0:14317
  otlp_http: 0.0.0.0:14318
  api: "[::1]:18088"
rules_file: /etc/refinery-py/rules.yaml
customer_fields: [customer.id, tenant.id]
traces:
  send_delay: 500ms
  trace_timeout: 30s
  span_limit: 1000
  decision_cache_ttl: 5m
  decision_cache_max_memory: 64MiB
  max_memory: 2GiB
limits:
  max_request_bytes: 8MiB
export:
  otlp:
    endpoint: https://api.honeycomb.io:443
    protocol: http
    headers:
      x-honeycomb-team: secret
    compression: none
    timeout: 5s
    batch_max_spans: 1000
    batch_max_bytes: 1MiB
    batch_timeout: 50ms
    queue_max_bytes: 32MiB
    retry_initial_interval: 500ms
    retry_max_interval: 10s
    retry_max_elapsed: 1m
    concurrency: 8
    insecure: false
store:
  path: /var/lib/refinery-py/traces.db
  retention: 12h
  max_size: 10GiB
  queue_max_bytes: 16MiB
api:
  token: s3cret
logging:
  level: debug
  format: json
"""


def problems(text: str) -> list[tuple[int, str]]:
    _, found = read_settings(textwrap.dedent(text), "c.yaml")
    return [(problem.line, problem.message) for problem in found]


def test_no_file_means_built_in_defaults() -> None:
    settings = load_settings(None)
    assert settings == Settings()
    assert settings.listen.otlp_grpc == "127.0.0.1:4317"
    assert settings.listen.otlp_http == "127.0.0.1:4318"
    assert settings.listen.api == "127.0.0.1:8088"
    assert settings.rules_file == "rules/default.yaml"
    assert settings.customer_fields == ("customer.id",)
    assert settings.traces.send_delay == 2.0
    assert settings.traces.trace_timeout == 60.0
    assert settings.traces.span_limit == 32000
    assert settings.traces.decision_cache_ttl == 0.0
    assert settings.traces.effective_decision_cache_ttl == 120.0
    assert settings.traces.decision_cache_max_memory == 256 * MiB
    assert settings.traces.max_memory == 0
    assert settings.traces.refusal_wait == 10.0
    assert parse_settings("traces:\n  refusal_wait: 0s", "c.yaml").traces.refusal_wait == 0
    assert settings.traces.memory_budget(8 * 1024 * MiB) == 4 * 1024 * MiB
    assert settings.limits.max_request_bytes == 16 * MiB
    assert settings.export.otlp is None
    assert settings.store.path == "./refinery-data/traces.db"
    assert settings.store.retention == 86400.0
    assert settings.store.max_size == 1024 * MiB
    assert settings.store.queue_max_bytes == 64 * MiB
    assert settings.cluster.forward_linger == 0.05
    assert parse_settings("cluster:\n  forward_linger: 0s", "c.yaml").cluster.forward_linger == 0
    assert settings.api.token is None
    assert settings.logging.level == "info"
    assert settings.logging.format == "text"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "traces:\nexport:\n"])
def test_empty_file_or_empty_sections_mean_defaults(text: str) -> None:
    assert parse_settings(text, "c.yaml") == Settings()


def test_a_file_with_every_key() -> None:
    settings = parse_settings(EVERY_KEY, "c.yaml")
    assert settings.source == "c.yaml"
    assert settings.listen.otlp_grpc == "0.0.0.0:14317"
    assert settings.listen.api == "[::1]:18088"
    assert settings.rules_file == "/etc/refinery-py/rules.yaml"
    assert settings.customer_fields == ("customer.id", "tenant.id")
    traces = settings.traces
    assert (traces.send_delay, traces.trace_timeout, traces.span_limit) == (0.5, 30.0, 1000)
    assert traces.effective_decision_cache_ttl == 300.0
    assert traces.decision_cache_max_memory == 64 * MiB
    assert traces.memory_budget(64 * 1024 * MiB) == 2 * 1024 * MiB
    assert settings.limits.max_request_bytes == 8 * MiB
    assert settings.export.otlp == OtlpExportSettings(
        endpoint="https://api.honeycomb.io:443",  # type: ignore[arg-type]
        protocol="http",
        headers={"x-honeycomb-team": "secret"},
        compression="none",
        timeout=5.0,  # type: ignore[arg-type]
        batch_max_spans=1000,
        batch_max_bytes=MiB,  # type: ignore[arg-type]
        batch_timeout=0.05,  # type: ignore[arg-type]
        queue_max_bytes=32 * MiB,  # type: ignore[arg-type]
        retry_initial_interval=0.5,  # type: ignore[arg-type]
        retry_max_interval=10.0,  # type: ignore[arg-type]
        retry_max_elapsed=60.0,  # type: ignore[arg-type]
        concurrency=8,
        insecure=False,
        line=18,
    )
    assert settings.export.otlp.use_tls
    assert settings.store.path == "/var/lib/refinery-py/traces.db"
    assert settings.store.retention == 12 * 3600.0
    assert settings.store.max_size == 10 * 1024 * MiB
    assert settings.store.queue_max_bytes == 16 * MiB
    assert settings.api.token == "s3cret"
    assert (settings.logging.level, settings.logging.format) == ("debug", "json")
    assert settings.traces.line == 8
    assert settings.listen.line == 2


def test_exporter_defaults() -> None:
    otlp = parse_settings("export:\n  otlp:\n    endpoint: collector:4317\n", "c.yaml").export.otlp
    assert otlp is not None
    assert (otlp.protocol, otlp.compression, otlp.headers) == ("grpc", "gzip", {})
    assert (otlp.timeout, otlp.batch_timeout) == (10.0, 0.0)
    assert (otlp.batch_max_spans, otlp.batch_max_bytes) == (8192, 3 * MiB)
    assert otlp.queue_max_bytes == 256 * MiB
    assert (otlp.retry_initial_interval, otlp.retry_max_interval) == (1.0, 30.0)
    assert otlp.retry_max_elapsed == 300.0
    assert otlp.concurrency == 4
    assert otlp.insecure is None
    assert not otlp.use_tls


@pytest.mark.parametrize(
    ("endpoint", "insecure", "tls"),
    [
        ("collector:4317", "", False),
        ("collector:4317", "insecure: false", True),
        ("collector:4317", "insecure: true", False),
        ("http://collector:4318", "", False),
        ("https://collector", "", True),
        ("https://collector", "insecure: false", True),
    ],
)
def test_tls_follows_the_url_scheme_else_insecure(endpoint: str, insecure: str, tls: bool) -> None:
    text = f"export:\n  otlp:\n    endpoint: {endpoint}\n    {insecure}\n"
    otlp = parse_settings(text, "c.yaml").export.otlp
    assert otlp is not None
    assert otlp.use_tls is tls


def test_store_path_null_turns_the_store_off() -> None:
    assert parse_settings("store:\n  path: null\n", "c.yaml").store.path is None


def test_every_problem_is_reported_at_once() -> None:
    assert problems(
        """\
        listen:
          otlp_grpc: 4317
        traces:
          span_limit: many
        logging:
          levle: debug
        """
    ) == [
        (2, "listen.otlp_grpc: '4317' is not host:port (the port is missing)"),
        (4, "traces.span_limit must be an integer, found the string 'many'"),
        (6, "unknown key levle in logging; did you mean level?"),
    ]


MISTAKES = [
    (
        "trace_timeout: 5s",
        1,
        "unknown key trace_timeout at the top level; did you mean traces.trace_timeout?",
    ),
    ("Traces:\n  send_delay: 1s", 1, "unknown key Traces at the top level; did you mean traces?"),
    ("traces:\n  sendDelay: 1s", 2, "unknown key sendDelay in traces; did you mean send_delay?"),
    ("traces:\n  send_delay: soon", 2, "traces.send_delay: 'soon' is not a duration"),
    ("traces:\n  trace_timeout: 0s", 2, "traces.trace_timeout must be greater than 0s, found 0s"),
    ("traces:\n  span_limit: 0", 2, "traces.span_limit must be at least 1, found 0"),
    ("limits:\n  max_request_bytes: lots", 2, "limits.max_request_bytes: 'lots' is not a size"),
    ("listen:\n  api: localhost:99999", 2, "the port must be a number from 0 to 65535"),
    ("customer_fields: customer.id", 1, "customer_fields must be a list of strings, found the"),
    ("logging:\n  format: xml", 2, "logging.format must be one of text, json; found 'xml'"),
    ("export:\n  otlp:\n    protocol: http", 2, "missing required key endpoint in export.otlp"),
    ("export:\n  otlp:\n    endpoint: ftp://x", 3, "URL must start with http:// or https://"),
    (
        "export:\n  otlp:\n    endpoint: x:1\n    protocol: grcp",
        4,
        "found 'grcp'; did you mean grpc?",
    ),
    ("export:\n  otlp:\n    endpoint: x:1\n    compression: zstd", 4, "one of gzip, none"),
    ("export:\n  otlp:\n    endpoint: x:1\n    concurrency: 0", 4, "at least 1, found 0"),
    (
        "export:\n  otlp:\n    endpoint: x:1\n    headers:\n      ok: 1\n      'a b': 2",
        6,
        "'a b' is not a valid header name",
    ),
    (
        "export:\n  otlp:\n    endpoint: http://x\n    insecure: false",
        4,
        "insecure is false but the endpoint is http://",
    ),
    (
        "export:\n  otlp:\n    endpoint: https://x\n    insecure: true",
        4,
        "insecure is true but the endpoint is https://",
    ),
    (
        "export:\n  otlp:\n    endpoint: x:1\n    retry_initial_interval: 1m",
        4,
        "(1m) is longer than retry_max_interval (30s)",
    ),
    ("store:\n  retention: 0s", 2, "store.retention must be greater than 0s, found 0s"),
    ("traces:\n  refusal_wait: soon", 2, "traces.refusal_wait: 'soon' is not a duration"),
    ("cluster:\n  forward_linger: 1s", 2, "cluster.forward_linger must be at most 250ms, found 1s"),
    ("api:\n  token: [a]", 2, "api.token must be a string, found a list"),
    ("- listen", 1, "the file must be a mapping of keys to values, found a list"),
    ("listen: [a]", 1, "listen must be a mapping, found a list"),
    (
        "traces:\n  span_limit: 1\n  span_limit: 2",
        3,
        "traces.span_limit is given twice (first at line 2)",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), MISTAKES)
def test_each_kind_of_mistake(text: str, line: int, message: str) -> None:
    [(found_line, found_message)] = problems(text + "\n")
    assert found_line == line
    assert message in found_message


def test_decision_cache_ttl_must_cover_twice_the_trace_timeout() -> None:
    text = "traces:\n  trace_timeout: 2m\n  decision_cache_ttl: 3m\n"
    assert problems(text) == [
        (
            3,
            "traces.decision_cache_ttl (3m) must be at least 2 × trace_timeout (4m), "
            "or 0 for that default",
        )
    ]
    ok = parse_settings("traces:\n  trace_timeout: 2m\n  decision_cache_ttl: 4m\n", "c.yaml")
    assert ok.traces.effective_decision_cache_ttl == 240.0


def test_yaml_syntax_error_is_a_problem_with_its_line() -> None:
    assert problems("traces:\n  send_delay: 2s\n span_limit: 4\n") == [
        (
            3,
            "YAML syntax error: expected <block end>, but found '<block mapping start>' "
            "(while parsing a block mapping that starts at line 1)",
        )
    ]


def test_parse_settings_raises_config_error_with_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings("traces:\n  span_limit: x\nlogging:\n  level: loud\n", "c.yaml")
    assert str(caught.value).splitlines() == [
        "c.yaml:2: traces.span_limit must be an integer, found the string 'x'",
        "c.yaml:4: logging.level must be one of debug, info, warning, error; found 'loud'",
    ]


def test_load_settings_and_check_config_file_read_files(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(EVERY_KEY, encoding="utf-8")
    assert load_settings(good).source == str(good)
    assert load_settings(str(good)).logging.level == "debug"
    # The checker also looks for the files the config names; this one is not on this machine.
    assert [p.message for p in check_config_file(good)] == [
        "rules_file: /etc/refinery-py/rules.yaml does not exist"
    ]

    bad = tmp_path / "bad.yaml"
    bad.write_text("traces:\n  span_limit: -1\n", encoding="utf-8")
    assert [str(problem) for problem in check_config_file(bad)] == [
        f"{bad}:2: traces.span_limit must be at least 1, found -1"
    ]
    with pytest.raises(ConfigError):
        load_settings(bad)


def test_unreadable_files_are_problems_too(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    [problem] = check_config_file(missing)
    assert str(problem) == f"{missing}: cannot read the config file: No such file or directory"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"a: \xff\xfe\n")
    assert [problem.message for problem in check_config_file(binary)] == [
        "the config file is not valid UTF-8"
    ]
