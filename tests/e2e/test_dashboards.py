"""Every dashboard panel and every alert, evaluated by a real Prometheus scraping a real cluster.

The observed node (`--workers 2`, so the supervisor's metrics and the `worker` label exist too)
is a member of a static two-node cluster; the second node (`--workers 1`, stress_relief.mode:
relieve) gets traffic too. The traffic is built to light up every panel: both OTLP doors, errors,
drops, refused requests (a peer door's too), late, expired, span-limited and ejected traces, a
backend that never answers, a store too small to keep up, rules reloads, spans forwarded both
ways and relayed inside a node (the test posing as a member that does not know the observed
node's worker doors), the second node stopped for a moment (what the observed node
forwards to it waits in the forward queues; a worker of the observed node is killed holding
such spans, and restarted; the second node, resuming over 1 s late, turns stress relief on), the
second node leaving with SIGTERM (handoffs, a membership change), and both workers of the
observed node stopped for two seconds (decision lag, then backpressure). Debian's Prometheus
scrapes both nodes every second and evaluates dashboards/alerts.yaml (with every `for:` set to 0,
so a condition fires at once). Then:

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

from refinery_py.cluster.ownership import Placement, worker_of
from refinery_py.otlp.batch_codec import encode_span_batch
from refinery_py.otlp.ingest import OriginInterner, split_request
from tests.cluster_support import free_ports
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
from tests.otlp_builders import request, span, trace_id

NOT_TRIGGERED: dict[str, str] = {}
"""Alerts this traffic does not make fire, each with the reason (none yet)."""

STAYS_ZERO: dict[tuple[str, str], str] = {
    ("Decision cache", "B"): "no decision is forgotten early: the cache is far below its bound",
    ("Store drops and write errors /s", "B"): "a failing SQLite transaction is not produced here",
    ("Forwarded spans /s, by outcome", "B"): (
        "re-routed spans need spans queued for a member when the owners change, a moment of a "
        "membership change this traffic does not aim at (tests/edge/cluster/test_forwarding.py "
        "makes them)"
    ),
    ("Forwarded spans /s, by outcome", "D"): (
        "misplaced spans need members that disagree on the owners while spans are in flight, a "
        "moment of a membership change this traffic does not aim at (tests/edge/cluster/"
        "test_forwarding.py makes them)"
    ),
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
  peer: {peer}                # worker i listens on its port + i
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
cluster:
  peers: [{peers}]
  secret: {secret}
"""

SECOND_CONFIG = """
listen:
  otlp_grpc: 127.0.0.1:0
  otlp_http: 127.0.0.1:0
  api: 127.0.0.1:0
  peer: {peer}
rules_file: rules-second.yaml
traces:
  send_delay: 200ms
  trace_timeout: 5m           # traces held for the handoff wait there until it leaves
stress_relief:
  mode: relieve
  activate_after: 0s          # the first tick that runs over 1 s late turns relief on...
  deactivate_after: 1h        # ...and it stays on until the node leaves
  sample_rate: 2
store:
  path: null
cluster:
  peers: [{peers}]
  secret: {secret}
"""

SECRET = "dashboards-test"

PROMETHEUS = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [{rules}]
scrape_configs:
  - job_name: refinery
    static_configs:
      - targets: ["{api}", "{second_api}", "127.0.0.1:{dead_port}"]
"""


@dataclass
class Observed:
    node: RefineryProcess
    second: RefineryProcess
    prometheus: Prometheus

    def context(self) -> str:
        return (
            "\n--- node log (last lines) ---\n"
            + "".join(self.node.log[-40:])
            + "\n--- second node log (last lines) ---\n"
            + "".join(self.second.log[-20:])
            + "\n--- prometheus log ---\n"
            + self.prometheus.log_tail(20)
        )


@dataclass(frozen=True)
class Cluster:
    """The observed node (two workers) and the second node (one), by their names as members."""

    node: RefineryProcess
    second: RefineryProcess
    names: tuple[str, str]

    def traces(self, owner: str, first: int, count: int, worker: int | None = None) -> list[int]:
        """The first `count` trace numbers from `first` that member `owner` owns (on the
        observed node: its worker `worker`, if given). Member names carry ports chosen at run
        time, so which node owns a number varies between runs; what is sent where does not."""
        placement = Placement(self.names, self.names[0])
        found: list[int] = []
        for number in itertools.count(first):
            owned = placement.node_of(trace_id(number)) == owner
            if owned and (worker is None or worker_of(trace_id(number), 2) == worker):
                found.append(number)
                if len(found) == count:
                    return found
        raise AssertionError("unreachable")


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


def hold_traces_on_the_second_node(cluster: Cluster) -> None:
    """Root-less traces the second node owns, buffered there (its trace_timeout is 5 minutes) until
    it leaves and hands them over."""
    second = cluster.second
    held = cluster.traces(cluster.names[1], 20_000, 4)
    body = request(*(span(t, n, 1) for t in held for n in (2, 3))).SerializeToString()
    assert post(second, body) == 200
    wait_until(
        lambda: second.metric("refinery_traces_waiting") == len(held),
        what="the second node holding its traces",
    )


SPANS_PER_FORWARD = 2


def lose_forwarded_spans_with_a_worker(cluster: Cluster) -> None:
    """Stop the second node (SIGSTOP), so that what the observed node forwards to it waits in the
    forward queues; once every worker of the observed node has a few requests' spans waiting,
    kill one: they die with it (refinery_worker_lost_spans_total{where="forward_queue"}) and it
    is restarted. When the second node resumes, its first decision tick runs over 1 s late, which
    turns stress relief on there, and the surviving worker delivers what it had queued.
    """
    node, second = cluster.node, cluster.second
    traces = iter(cluster.traces(cluster.names[1], 30_000, 200))

    def every_worker_has_requests_waiting() -> bool:
        # One request in flight, one queued behind it: what dies with the killed worker.
        least = 2 * SPANS_PER_FORWARD
        return all(
            node.metric("refinery_cluster_forward_queue_spans", worker=str(i)) >= least
            for i in range(2)
        )

    stopped_at = time.monotonic()
    os.kill(second.process.pid, signal.SIGSTOP)
    try:
        for _ in range(100):
            if every_worker_has_requests_waiting():
                break
            trace = next(traces)
            spans = [span(trace, n, 1) for n in range(2, 2 + SPANS_PER_FORWARD)]
            # A worker whose queued spans have waited 0.5 s refuses (429), as it should; on a
            # slow machine that can come before the other worker has its share, so go on.
            assert post(node, request(*spans).SerializeToString()) in (200, 429)
        else:
            raise AssertionError("100 requests on their own connections never reached both workers")
        restart_a_worker(node)
        wait_until(
            lambda: node.metric("refinery_worker_lost_spans_total", where="forward_queue") > 0,
            what="the dead worker's forward queue counted lost",
        )
        time.sleep(max(0.0, stopped_at + 1.5 - time.monotonic()))  # its next tick: over 1 s late
    finally:
        os.kill(second.process.pid, signal.SIGCONT)
    wait_until(
        lambda: second.metric("refinery_stress_relief_active") == 1,
        what="stress relief on in the second node, which resumed over 1 s behind",
    )
    wait_until(
        lambda: node.metric("refinery_cluster_forward_queue_spans") == 0,
        what="every span the surviving worker queued delivered",
    )


def restart_a_worker(node: RefineryProcess) -> None:
    (first, *_) = worker_pids(node)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: node.metric("refinery_worker_restarts") == 1, what="worker restarted")
    wait_until(lambda: node.get("/ready")[0] == 200, what="node ready after the restart")


def relay_through_the_first_door(cluster: Cluster) -> None:
    """A member that could not ask the observed node for its worker doors sends to the node's
    address, worker 0's door, which passes worker 1's spans on
    (refinery_cluster_relayed_spans_total). The test is that member: the peer protocol, with
    the cluster secret."""
    node = cluster.node
    mine = [t for w in (0, 1) for t in cluster.traces(cluster.names[0], 40_000, 2, worker=w)]
    batch = split_request(
        request(*(span(t, 1) for t in mine)).SerializeToString(), OriginInterner()
    )
    host, port = cluster.names[0].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        headers = {"Authorization": f"Bearer {SECRET}", "X-Refinery-Hops": "1"}
        connection.request("POST", "/peer/v1/spans", encode_span_batch(batch), headers)
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    wait_until(
        lambda: node.metric("refinery_cluster_relayed_spans_total") > 0,
        what="worker 0 relaying worker 1's spans from the uninformed member",
    )


def reload_rules(node: RefineryProcess, rules: Path) -> None:
    rules.write_text("RulesVersion: 2\nSamplers: [not, a, map]\n")
    assert post_api(node, "/api/v1/rules/reload") == 422, "an invalid rules file is rejected"
    rules.write_text(RULES.replace("GOAL", "4"))
    assert post_api(node, "/api/v1/rules/reload") == 200


def sdk_traffic(cluster: Cluster) -> None:
    """Both doors of the observed node and the second node's HTTP door through the SDK for about
    four seconds (the samplers' windows are 1 s), with seeded trace IDs: the traces are the same
    every run (which member owns each depends on the members' ports)."""
    node = cluster.node
    with (
        tracer_provider("grpc", node.grpc_endpoint, service="shop", seed=1) as shop,
        tracer_provider("http", node.http_endpoint, service="batch", seed=2) as batch,
        tracer_provider("http", cluster.second.http_endpoint, service="front", seed=3) as front,
    ):
        shop_tracer, batch_tracer = shop.get_tracer("e2e"), batch.get_tracer("e2e")
        front_tracer = front.get_tracer("e2e")
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
            with front_tracer.start_as_current_span("GET /") as root:
                root.set_attribute("http.route", "/")
                with front_tracer.start_as_current_span("render"):
                    pass
            time.sleep(0.2)


def decided(node: RefineryProcess, trace_hex: str) -> bool:
    status, body = node.get(f"/api/v1/traces/{trace_hex}")
    return status == 200 and json.loads(body)["decision"] is not None


def refused_and_unusual_requests(cluster: Cluster, peer_port: int) -> None:
    """On traces the observed node owns (its budgets are the ones set for them)."""
    node = cluster.node
    lone, over_limit, no_root, big_one, late = cluster.traces(cluster.names[0], 900, 5)
    assert post(node, b"\x0a\xff\xff\xff garbage") == 400
    assert post(node, b"{}", content_type="text/plain") == 415
    assert post(node, b"\x00" * (1536 * 1024)) == 413
    # A span with an all-zero trace ID is refused inside an accepted request (partial success).
    assert post(node, request(span(0, 1), span(lone, 1)).SerializeToString()) == 200
    # More spans than span_limit: decided at once.
    spans = [span(over_limit, 1)] + [span(over_limit, n, 1) for n in range(2, 26)]
    assert post(node, request(*spans).SerializeToString()) == 200
    # No root: decided when trace_timeout passes.
    assert post(node, request(span(no_root, 2, 1), span(no_root, 3, 1)).SerializeToString()) == 200
    # 400 KB of spans with no root: over the worker's memory budget, so decided early (an error
    # keeps it), and too large for the store's queue.
    padding = "x" * 40_000
    big = [span(big_one, n, 1, attrs={"payload": padding}, error=n == 2) for n in range(2, 12)]
    assert post(node, request(*big).SerializeToString()) == 200
    # A span arriving after its trace's decision.
    assert post(node, request(span(late, 1), span(late, 2, 1)).SerializeToString()) == 200
    wait_until(lambda: decided(node, f"{late:032x}"), what=f"trace {late} decided")
    assert post(node, request(span(late, 3, 1)).SerializeToString()) == 200
    # A peer door asked without the cluster secret.
    connection = http.client.HTTPConnection("127.0.0.1", peer_port, timeout=10)
    try:
        connection.request("POST", "/peer/v1/spans", b"", {"Content-Type": "application/x-peer"})
        assert connection.getresponse().status == 401
    finally:
        connection.close()


def the_second_node_leaves(cluster: Cluster, prometheus: Prometheus) -> None:
    """SIGTERM: it leaves the cluster and hands its traces (those held since the start) and the
    decisions it remembers to the observed node, whose member count drops to 1. Prometheus
    scrapes its relieved spans first: it cannot once the node is gone."""
    node, second = cluster.node, cluster.second
    second_api = second.api.removeprefix("http://")
    prometheus.wait_until(
        lambda: bool(
            prometheus.query(f'refinery_stress_relief_spans_total{{instance="{second_api}"}} > 0')
        ),
        "Prometheus to scrape the second node's relieved spans",
    )
    second.process.send_signal(signal.SIGTERM)
    wait_until(
        lambda: node.metric("refinery_cluster_members") == 1,
        what="the observed node alone in the cluster",
    )
    for handed in ("traces", "decisions"):
        wait_until(
            lambda handed=handed: (
                node.metric(f"refinery_cluster_handoff_{handed}_total", direction="in") > 0
            ),
            what=f"the second node's {handed} handed to the observed node",
        )


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
    (directory / "rules-second.yaml").write_text(RULES.replace("GOAL", "5"))
    dead_port = free_port()
    peer_port, second_peer_port = free_ports(2), free_ports(1)  # worker i: peer port + i
    names = (f"127.0.0.1:{peer_port}", f"127.0.0.1:{second_peer_port}")
    peers = ", ".join(names)
    config = directory / "refinery.yaml"
    config.write_text(CONFIG.format(dead_port=dead_port, peer=names[0], peers=peers, secret=SECRET))
    second_config = directory / "second.yaml"
    second_config.write_text(SECOND_CONFIG.format(peer=names[1], peers=peers, secret=SECRET))
    alerts = directory / "alerts.yaml"
    alerts_firing_at_once(ALERTS, alerts)
    with (
        RefineryProcess(second_config, workers=1) as second,
        RefineryProcess(config, workers=2) as node,
    ):
        cluster = Cluster(node, second, names)
        api, second_api = (n.api.removeprefix("http://") for n in (node, second))
        scrape = PROMETHEUS.format(
            rules=alerts, api=api, second_api=second_api, dead_port=dead_port
        )
        with Prometheus(directory, scrape) as prometheus:
            seen = Observed(node, second, prometheus)
            scraped = f'count_over_time(up{{instance=~"{api}|{second_api}"}}[1m]) > 2'
            prometheus.wait_until(
                lambda: len(prometheus.query(scraped)) == 2,
                "Prometheus to scrape both nodes three times",
            )
            hold_traces_on_the_second_node(cluster)
            lose_forwarded_spans_with_a_worker(cluster)
            relay_through_the_first_door(cluster)
            reload_rules(node, rules)
            sdk_traffic(cluster)
            refused_and_unusual_requests(cluster, peer_port)
            the_second_node_leaves(cluster, prometheus)
            stall_the_workers(node)
            assert second.process.wait(60) == 0, "the second node left and exited cleanly"
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


def test_spans_lost_counts_spans_that_died_with_a_worker(observed: Observed) -> None:
    """RefinerySpansLost names every way spans were lost: here the dead backend's drops and the
    forwarded spans that died with the killed worker."""
    wanted = {("otlp", "dropped_retries_exhausted"), ("worker", "died_forward_queue")}
    seen: set[tuple[str, str]] = set()

    def both_fired() -> bool:
        result = observed.prometheus.query(
            "max by (exporter, outcome) (max_over_time("
            f'ALERTS{{alertname="RefinerySpansLost", alertstate="firing"}}[{RATE_WINDOW}]))'
        )
        seen.update((s["metric"]["exporter"], s["metric"]["outcome"]) for s in result)
        return wanted <= seen

    deadline = time.monotonic() + 60
    while not both_fired() and time.monotonic() < deadline:
        time.sleep(1)
    assert wanted <= seen, f"RefinerySpansLost fired for {sorted(seen)}" + observed.context()
