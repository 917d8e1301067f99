"""Every dashboard panel and every alert, evaluated by a real Prometheus scraping a real node.

One node (`--workers 2`, so the supervisor's metrics and the `worker` label exist too) gets
traffic built to light up every panel: both OTLP doors, errors, drops, refused requests, late,
expired, span-limited and ejected traces, a backend that never answers, a store too small to
keep up, rules reloads, a worker killed and restarted, and both workers stopped for two seconds
(decision lag, then backpressure). Debian's Prometheus scrapes it every second and evaluates
dashboards/alerts.yaml (with every `for:` set to 0, so a condition fires at once). Then:

- every panel query of every dashboard returns a finite value, and every rate or increase one
  that this traffic moves a positive one (STAYS_ZERO lists the exceptions);
- every refinery_* metric a panel or an alert names is one the node exports;
- every alert fires (an alert this traffic cannot trigger must be listed in NOT_TRIGGERED);
- `promtool check rules` accepts the rules file as shipped.

The panels and alerts come from the files (tests/dashboard_files.py): a new panel or alert is
checked without editing this test.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from opentelemetry.trace import Status, StatusCode

from tests.dashboard_files import (
    ALERTS,
    RATE_WINDOW,
    alert_rules,
    concrete,
    metric_names,
    panel_queries,
    variable_queries,
)
from tests.e2e.harness import RefineryProcess, wait_until
from tests.e2e.peers import Prometheus, free_port, require
from tests.e2e.sdk import tracer_provider
from tests.otlp_builders import request, span

NOT_TRIGGERED: dict[str, str] = {}
"""Alerts this traffic does not make fire, each with the reason (none yet)."""

STAYS_ZERO: dict[tuple[str, str], str] = {
    ("Decision cache", "B"): "no decision is forgotten early: the cache is far below its bound",
    ("Store drops and write errors /s", "B"): "a failing SQLite transaction is not produced here",
}
"""Rate queries (panel title, refId) this traffic leaves at 0, each with the reason. Every other
rate or increase a panel shows must move: the traffic is built to light every panel up."""

RULES = """
RulesVersion: 2
Samplers:
  __default__:
    RulesBasedSampler:
      Rules:
        - Name: keep errors
          SampleRate: 1
          Conditions:
            - Field: error
              Operator: exists
        - Name: drop health checks
          Drop: true
          Conditions:
            - Field: http.route
              Operator: "="
              Value: /healthz
        - Name: share the rest
          Sampler:
            EMAThroughputSampler:
              GoalThroughputPerSec: 1
              AdjustmentInterval: 1s
              FieldList: [customer.id]
  batch:
    EMADynamicSampler:
      GoalSampleRate: GOAL
      AdjustmentInterval: 1s
      FieldList: [job.name]
"""

CONFIG = """
listen:
  otlp_grpc: 127.0.0.1:0
  otlp_http: 127.0.0.1:0
  api: 127.0.0.1:0
rules_file: rules.yaml
traces:
  send_delay: 200ms
  trace_timeout: 2s
  span_limit: 20
  max_memory: 512KiB          # 256 KiB per worker: one 400 KB trace is ejected
limits:
  max_request_bytes: 1MiB
export:
  otlp:
    endpoint: 127.0.0.1:{dead_port}   # nothing listens: every export fails, is retried, dropped
    protocol: grpc
    timeout: 1s
    retry_initial_interval: 100ms
    retry_max_interval: 200ms
    retry_max_elapsed: 1s
store:
  path: store/traces.db
  retention: 2s
  queue_max_bytes: 128KiB     # 64 KiB per worker: the 400 KB trace does not fit
"""

PROMETHEUS = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [{rules}]
scrape_configs:
  - job_name: refinery
    static_configs:
      - targets: ["{api}", "127.0.0.1:{dead_port}"]
"""


@dataclass
class Observed:
    node: RefineryProcess
    prometheus: Prometheus

    def context(self) -> str:
        return (
            "\n--- node log (last lines) ---\n"
            + "".join(self.node.log[-40:])
            + "\n--- prometheus log ---\n"
            + self.prometheus.log_tail(20)
        )


def worker_pids(node: RefineryProcess) -> list[int]:
    children = subprocess.run(
        ["pgrep", "-P", str(node.process.pid)], capture_output=True, text=True, check=False
    )
    pids = [int(p) for p in children.stdout.split()]
    return [p for p in pids if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]


def http_address(node: RefineryProcess) -> tuple[str, int]:
    host, port = node.http_endpoint.removeprefix("http://").removesuffix("/v1/traces").split(":")
    return host, int(port)


def post(node: RefineryProcess, body: bytes, content_type: str = "application/x-protobuf") -> int:
    connection = http.client.HTTPConnection(*http_address(node), timeout=15)
    try:
        connection.request("POST", "/v1/traces", body, {"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def post_api(node: RefineryProcess, path: str) -> int:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(node.api + path, data=b"", method="POST"), timeout=10
        ) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def alerts_firing_at_once(source: Path, target: Path) -> None:
    """The rules file with every `for:` removed: the tests check conditions, not patience."""
    document = yaml.safe_load(source.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
            rule.pop("keep_firing_for", None)
    target.write_text(yaml.safe_dump(document, sort_keys=False))


# ---- traffic ---------------------------------------------------------------------------------


def restart_a_worker(node: RefineryProcess) -> None:
    (first, *_) = worker_pids(node)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: node.metric("refinery_worker_restarts") == 1, what="worker restarted")
    wait_until(lambda: node.get("/ready")[0] == 200, what="node ready after the restart")


def reload_rules(node: RefineryProcess, rules: Path) -> None:
    rules.write_text("RulesVersion: 2\nSamplers: [not, a, map]\n")
    assert post_api(node, "/api/v1/rules/reload") == 422, "an invalid rules file is rejected"
    rules.write_text(RULES.replace("GOAL", "4"))
    assert post_api(node, "/api/v1/rules/reload") == 200


def sdk_traffic(node: RefineryProcess) -> None:
    """Both doors through the SDK for about four seconds (the samplers' windows are 1 s), with
    seeded trace IDs: which traces the samplers keep does not vary from run to run."""
    with (
        tracer_provider("grpc", node.grpc_endpoint, service="shop", seed=1) as shop,
        tracer_provider("http", node.http_endpoint, service="batch", seed=2) as batch,
    ):
        shop_tracer, batch_tracer = shop.get_tracer("e2e"), batch.get_tracer("e2e")
        for round_ in range(20):
            for n in range(5):
                error, health = round_ % 2 == 0 and n == 0, n == 1
                with shop_tracer.start_as_current_span("GET /orders") as root:
                    root.set_attribute("customer.id", f"c{round_ * 5 + n}")
                    root.set_attribute("http.route", "/healthz" if health else "/orders")
                    with shop_tracer.start_as_current_span("SELECT") as child:
                        if error:
                            child.set_status(Status(StatusCode.ERROR, "boom"))
            for n in range(3):
                with batch_tracer.start_as_current_span("job") as root:
                    root.set_attribute("job.name", f"job-{n}")
                    with batch_tracer.start_as_current_span("step"):
                        pass
            time.sleep(0.2)


def decided(node: RefineryProcess, trace_id: str) -> bool:
    status, body = node.get(f"/api/v1/traces/{trace_id}")
    return status == 200 and json.loads(body)["decision"] is not None


def refused_and_unusual_requests(node: RefineryProcess) -> None:
    assert post(node, b"\x0a\xff\xff\xff garbage") == 400
    assert post(node, b"{}", content_type="text/plain") == 415
    assert post(node, b"\x00" * (1536 * 1024)) == 413
    # A span with an all-zero trace ID is refused inside an accepted request (partial success).
    assert post(node, request(span(0, 1), span(900, 1)).SerializeToString()) == 200
    # More spans than span_limit: decided at once.
    over_limit = [span(901, 1)] + [span(901, n, 1) for n in range(2, 26)]
    assert post(node, request(*over_limit).SerializeToString()) == 200
    # No root: decided when trace_timeout passes.
    assert post(node, request(span(902, 2, 1), span(902, 3, 1)).SerializeToString()) == 200
    # 400 KB of spans with no root: over the worker's memory budget, so decided early (an error
    # keeps it), and too large for the store's queue.
    padding = "x" * 40_000
    big = [span(903, n, 1, attrs={"payload": padding}, error=n == 2) for n in range(2, 12)]
    assert post(node, request(*big).SerializeToString()) == 200
    # A span arriving after its trace's decision.
    assert post(node, request(span(904, 1), span(904, 2, 1)).SerializeToString()) == 200
    wait_until(lambda: decided(node, f"{904:032x}"), what="trace 904 decided")
    assert post(node, request(span(904, 3, 1)).SerializeToString()) == 200


def stall_the_workers(node: RefineryProcess) -> None:
    """Stop both workers for 2 s while a client keeps sending: the tick after the stop runs ~2 s
    late (counted in refinery_decision_tick_lag_seconds), and requests arriving while the lag is
    over 1 s are refused as overloaded. Repeated (a few times at most) until one is."""
    refused = 0
    for attempt in range(5):
        stop = threading.Event()
        statuses: list[int] = []

        ids = itertools.count(100_000 * (attempt + 1))  # a fresh trace per request

        def send(
            stop: threading.Event = stop, statuses: list[int] = statuses, ids: Iterator[int] = ids
        ) -> None:
            while not stop.is_set():
                try:
                    statuses.append(post(node, request(span(next(ids), 1)).SerializeToString()))
                except OSError:
                    statuses.append(-1)

        senders = [threading.Thread(target=send) for _ in range(2)]
        for sender in senders:
            sender.start()
        time.sleep(0.3)
        workers = worker_pids(node)
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(2.0)
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        time.sleep(1.0)
        stop.set()
        for sender in senders:
            sender.join(30)
        refused += statuses.count(429)
        if refused:
            return
    raise AssertionError("stalled workers never refused a request as overloaded")


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    directory = tmp_path_factory.mktemp("dashboards")
    rules = directory / "rules.yaml"
    rules.write_text(RULES.replace("GOAL", "5"))
    dead_port = free_port()
    config = directory / "refinery.yaml"
    config.write_text(CONFIG.format(dead_port=dead_port))
    alerts = directory / "alerts.yaml"
    alerts_firing_at_once(ALERTS, alerts)
    with RefineryProcess(config, extra_args=["--workers", "2"]) as node:
        api = node.api.removeprefix("http://")
        scrape = PROMETHEUS.format(rules=alerts, api=api, dead_port=dead_port)
        with Prometheus(directory, scrape) as prometheus:
            seen = Observed(node, prometheus)
            prometheus.wait_until(
                lambda: bool(prometheus.query(f'count_over_time(up{{instance="{api}"}}[1m]) > 2')),
                "Prometheus to scrape the node three times",
            )
            restart_a_worker(node)
            reload_rules(node, rules)
            sdk_traffic(node)
            refused_and_unusual_requests(node)
            stall_the_workers(node)
            yield seen


# ---- the checks ------------------------------------------------------------------------------


def test_promtool_accepts_the_alerting_rules() -> None:
    promtool = require("promtool", "run `make test` (it installs Debian's prometheus package)")
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_panel_query_returns_data(observed: Observed) -> None:
    queries = panel_queries()
    stale = set(STAYS_ZERO) - {(query.panel, query.ref_id) for query in queries}
    assert not stale, f"STAYS_ZERO names queries no dashboard has: {stale}"
    missing: dict[str, str] = {}

    def all_answer() -> bool:
        missing.clear()
        for query in queries:
            result = observed.prometheus.query(concrete(query.expr))
            values = [float(sample["value"][1]) for sample in result]
            counts_events = "rate(" in query.expr or "increase(" in query.expr
            if counts_events and (query.panel, query.ref_id) not in STAYS_ZERO:
                ok = any(math.isfinite(v) and v > 0 for v in values)
            else:
                ok = any(math.isfinite(v) for v in values)
            if not ok:
                missing[query.where()] = f"{concrete(query.expr)}\n    -> {values or 'no data'}"
        return not missing

    deadline = time.monotonic() + 60
    while not all_answer() and time.monotonic() < deadline:
        time.sleep(1)
    assert not missing, (
        "panel queries without a finite value (a rate: without a positive one):\n"
        + "\n".join(f"{where}:\n    {why}" for where, why in missing.items())
        + observed.context()
    )


def test_every_metric_the_dashboards_and_alerts_name_is_exported(observed: Observed) -> None:
    exported = set(observed.prometheus.api("/api/v1/label/__name__/values"))
    named = {
        name: where
        for query in panel_queries()
        for name, where in ((n, query.where()) for n in metric_names(query.expr))
    }
    named.update(
        {n: f"alert {rule['alert']}" for rule in alert_rules() for n in metric_names(rule["expr"])}
    )
    unknown = {name: where for name, where in named.items() if name not in exported}
    assert not unknown, f"metrics the node does not export: {unknown}" + observed.context()


def test_every_template_variable_finds_values(observed: Observed) -> None:
    for name, query in variable_queries():
        inner = query.removeprefix("label_values(").removesuffix(")")
        selector, label = (part.strip() for part in inner.rsplit(",", 1))
        params = {"match[]": concrete(selector), "start": str(time.time() - 120)}
        series = observed.prometheus.api("/api/v1/series?" + urllib.parse.urlencode(params))
        values = {s[label] for s in series if label in s}
        assert values, f"variable {name}: {query} finds no values" + observed.context()


def test_every_alert_fires(observed: Observed) -> None:
    expected = {rule["alert"] for rule in alert_rules()} - set(NOT_TRIGGERED)
    fired: set[str] = set()

    def all_fired() -> bool:
        result = observed.prometheus.query(
            f'max by (alertname) (max_over_time(ALERTS{{alertstate="firing"}}[{RATE_WINDOW}]))'
        )
        fired.update(sample["metric"]["alertname"] for sample in result)
        return expected <= fired

    deadline = time.monotonic() + 60
    while not all_fired() and time.monotonic() < deadline:
        time.sleep(1)
    rules = observed.prometheus.api("/api/v1/rules")["groups"]
    unhealthy = {
        rule["name"]: rule.get("lastError")
        for group in rules
        for rule in group["rules"]
        if rule["health"] != "ok"
    }
    assert not unhealthy, f"rules Prometheus could not evaluate: {unhealthy}"
    assert expected <= fired, (
        f"alerts that never fired: {sorted(expected - fired)}" + observed.context()
    )
