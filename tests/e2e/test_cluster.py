"""Several `refinery-py serve` nodes sampling as one: static and Redis membership, a node that
dies, and nodes that join and leave while traces are in flight.

Every node runs one worker (two cores are shared by all of them). Spans of each trace are sent
one by one to random nodes, as services behind a plain load balancer would, so most spans reach
a node that does not own their trace and must be forwarded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path

from tests.cluster_support import KEEP_ALL, free_port, free_ports
from tests.e2e.cluster_harness import (
    RedisServer,
    SpreadTraffic,
    address_of,
    check_whole_once,
    write_node_config,
)
from tests.e2e.harness import RecordingBackend, RefineryProcess, wait_until


def decided(nodes: list[RefineryProcess]) -> float:
    return sum(node.metric("refinery_traces_decided_total") for node in nodes)


def members(node: RefineryProcess) -> dict[str, object]:
    status, body = node.get("/api/v1/cluster")
    assert status == 200
    document: dict[str, object] = json.loads(body)
    return document


def send_traces(traffic: SpreadTraffic, addresses: list[str], count: int) -> None:
    for _ in range(count):
        trace = traffic.new_trace()
        for span_number in range(2, traffic.spans_per_trace + 1):
            traffic.send_span(trace, span_number, addresses)
        traffic.send_span(trace, 1, addresses)  # the root last, as instrumentations do


def static_cluster(
    directory: Path,
    backend: RecordingBackend,
    stack: contextlib.ExitStack,
    *,
    size: int,
    workers: int,
) -> tuple[list[RefineryProcess], list[str]]:
    """`size` nodes of `workers` workers listing each other in `cluster.peers`, keeping every
    trace; the nodes, and their names."""
    ports = [free_ports(workers) for _ in range(size)]  # worker i listens on the peer port + i
    peers = [f"127.0.0.1:{port}" for port in ports]
    rules = directory / "rules.yaml"
    rules.write_text(KEEP_ALL)
    nodes = [
        stack.enter_context(
            RefineryProcess(
                write_node_config(
                    directory, f"node{i}", backend, [f"peers: [{', '.join(peers)}]"], peer_port=port
                ),
                rules,
                workers=workers,
            )
        )
        for i, port in enumerate(ports)
    ]
    return nodes, peers


def test_a_static_cluster_decides_every_trace_once_and_whole(tmp_path: Path) -> None:
    with RecordingBackend() as backend, contextlib.ExitStack() as stack:
        nodes, peers = static_cluster(tmp_path, backend, stack, size=3, workers=1)
        for node, peer in zip(nodes, peers, strict=True):
            assert members(node) == {"self": peer, "members": sorted(peers), "source": "static"}
        traffic = SpreadTraffic()
        send_traces(traffic, [address_of(node) for node in nodes], 60)
        wait_until(lambda: decided(nodes) == 60, what="60 traces decided")
        wait_until(lambda: len(backend.spans()) == 360, what="every span exported")
        check_whole_once(backend, traffic)
        forwarded = sum(n.metric("refinery_cluster_spans_total", direction="sent") for n in nodes)
        received = sum(
            n.metric("refinery_cluster_spans_total", direction="received") for n in nodes
        )
        assert forwarded == received > 120  # two thirds of 360 spans, give or take
        # Any member answers for any trace: it asks the owner.
        some_trace = next(iter(traffic.sent))
        for node in nodes:
            status, body = node.get(f"/api/v1/traces/{some_trace}")
            assert status == 200, body
            assert len(json.loads(body)["spans"]) == 6
        for node in nodes:
            assert node.terminate() == 0


def test_a_redis_cluster_survives_a_member_killed(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    with (
        RedisServer(tmp_path) as redis,
        RecordingBackend() as backend,
        contextlib.ExitStack() as stack,
    ):
        cluster = ["redis:", f"  url: {redis.url}", "  name: e2e", "  ttl: 1s"]
        nodes = [
            stack.enter_context(
                RefineryProcess(write_node_config(tmp_path, f"node{i}", backend, cluster), rules)
            )
            for i in range(3)
        ]
        names = sorted(node.peer for node in nodes)
        wait_until(lambda: all(members(n)["members"] == names for n in nodes), what="three members")
        assert members(nodes[0])["source"] == "redis"
        traffic = SpreadTraffic(seed=11)
        send_traces(traffic, [address_of(node) for node in nodes], 30)
        wait_until(lambda: decided(nodes) == 30, what="30 traces decided")
        wait_until(lambda: len(backend.spans()) == 180, what="every span exported")
        check_whole_once(backend, traffic)

        victim = nodes.pop()
        os.killpg(victim.process.pid, signal.SIGKILL)
        survivors = sorted(node.peer for node in nodes)
        # Its heartbeat key expires within the TTL (1 s); members list again every second.
        wait_until(
            lambda: all(members(n)["members"] == survivors for n in nodes),
            timeout=10,
            what="the killed member gone from every member list",
        )
        before = decided(nodes)
        after = SpreadTraffic(seed=12, first_trace=1000)
        send_traces(after, [address_of(node) for node in nodes], 30)
        wait_until(lambda: decided(nodes) == before + 30, what="30 more traces decided")
        wait_until(lambda: len(backend.spans()) == 360, what="every new span exported")
        check_whole_once(backend, after)
        for node in nodes:
            assert node.terminate() == 0


class SteadyTraffic:
    """Traces started every 40 ms, each span sent 250 ms after the one before (so a trace is in
    flight for about 1.25 s, root last), to whichever nodes are in `addresses` at that moment."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.lock = threading.Lock()
        self.traffic = SpreadTraffic(seed=21)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> SteadyTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        schedule: list[tuple[float, int, int]] = []
        next_trace = time.monotonic()
        per_trace = self.traffic.spans_per_trace
        try:
            while not self._stop.is_set() or schedule:
                now = time.monotonic()
                if not self._stop.is_set() and now >= next_trace:
                    trace = self.traffic.new_trace()
                    order = [*range(2, per_trace + 1), 1]
                    schedule += [(now + 0.25 * k, trace, s) for k, s in enumerate(order)]
                    next_trace = now + 0.04
                due = [item for item in schedule if item[0] <= now]
                schedule = [item for item in schedule if item[0] > now]
                for _, trace, span_number in sorted(due):
                    with self.lock:
                        addresses = list(self.addresses)
                    self.traffic.send_span(trace, span_number, addresses)
                time.sleep(0.01)
        except BaseException as error:  # reported by stop()
            self.error = error


def test_members_join_and_leave_while_traces_are_in_flight(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    with (
        RedisServer(tmp_path) as redis,
        RecordingBackend() as backend,
        contextlib.ExitStack() as stack,
    ):
        cluster = ["redis:", f"  url: {redis.url}", "  name: moving", "  ttl: 2s"]

        def start(name: str) -> RefineryProcess:
            config = write_node_config(tmp_path, name, backend, cluster, send_delay="1s")
            return stack.enter_context(RefineryProcess(config, rules))

        nodes = [start("first"), start("second")]
        wait_until(lambda: len(members(nodes[0])["members"]) == 2, what="two members")  # type: ignore[arg-type]
        addresses = [address_of(node) for node in nodes]
        with SteadyTraffic(addresses) as steady:
            time.sleep(2.0)
            joining = start("third")  # joins while traces are in flight
            with steady.lock:
                addresses.append(address_of(joining))
            wait_until(
                lambda: all(len(members(n)["members"]) == 3 for n in [*nodes, joining]),  # type: ignore[arg-type]
                what="three members",
            )
            time.sleep(2.0)
            leaving = nodes.pop(0)
            with steady.lock:  # the load balancer stops sending to it first, as it would
                addresses.remove(address_of(leaving))
            time.sleep(0.3)
            assert leaving.terminate() == 0  # leaves while traces it owned are in flight
            nodes.append(joining)
            time.sleep(2.0)
        sent = sum(len(spans) for spans in steady.traffic.sent.values())
        wait_until(lambda: len(backend.spans()) >= sent, timeout=30, what="every span exported")
        time.sleep(1.0)  # anything arriving twice would arrive now
        check_whole_once(backend, steady.traffic)
        handed = sum(
            n.metric("refinery_cluster_handoff_traces_total", direction="in") for n in nodes
        )
        assert handed > 0, "the join and the leave moved traces in flight"
        for node in nodes:
            assert node.terminate() == 0


def test_nodes_of_two_workers_reach_the_owning_worker_in_one_hop(tmp_path: Path) -> None:
    with RecordingBackend() as backend, contextlib.ExitStack() as stack:
        nodes, peers = static_cluster(tmp_path, backend, stack, size=2, workers=2)
        assert members(nodes[1]) == {"self": peers[1], "members": sorted(peers), "source": "static"}
        traffic = SpreadTraffic(seed=31)
        addresses = [address_of(node) for node in nodes]
        send_traces(traffic, addresses, 60)
        wait_until(lambda: decided(nodes) == 60, what="60 traces decided")
        wait_until(lambda: len(backend.spans()) == 360, what="every span exported")
        check_whole_once(backend, traffic)
        forwarded = sum(n.metric("refinery_cluster_spans_total", direction="sent") for n in nodes)
        assert forwarded > 0, "spans crossed between the nodes"
        relayed = sum(n.metric("refinery_cluster_relayed_spans_total") for n in nodes)
        assert relayed == 0, "a worker asks a node for its workers first: no span takes two hops"
        for node in nodes:
            assert node.terminate() == 0


DROP_ALL = (
    "RulesVersion: 2\nSamplers:\n  __default__:\n    RulesBasedSampler:\n      Rules:\n"
    "        - Name: drop everything\n          Drop: true\n"
)


def test_a_rules_change_on_one_member_reaches_the_others(tmp_path: Path) -> None:
    with (
        RedisServer(tmp_path) as redis,
        RecordingBackend() as backend,
        contextlib.ExitStack() as stack,
    ):
        cluster = ["redis:", f"  url: {redis.url}", "  name: rules", "  ttl: 2s"]
        rules_files = [tmp_path / f"rules{i}.yaml" for i in range(2)]
        nodes = []
        for i, rules in enumerate(rules_files):
            rules.write_text(KEEP_ALL)
            config = write_node_config(tmp_path, f"node{i}", backend, cluster)
            nodes.append(stack.enter_context(RefineryProcess(config, rules, workers=1 + i)))
        wait_until(lambda: len(members(nodes[1])["members"]) == 2, what="two members")  # type: ignore[arg-type]
        rules_files[0].write_text(DROP_ALL)  # changed on the first node only
        new_digest = hashlib.sha256(DROP_ALL.encode()).hexdigest()

        def digest(node: RefineryProcess) -> object:
            return json.loads(node.get("/api/v1/rules")[1])["digest"]

        wait_until(lambda: digest(nodes[1]) == new_digest, what="the second node's new rules")
        assert json.loads(nodes[1].get("/api/v1/rules")[1])["from_member"] == nodes[0].peer
        assert digest(nodes[0]) == new_digest
        traffic = SpreadTraffic(seed=41)
        send_traces(traffic, [address_of(node) for node in nodes], 10)
        wait_until(lambda: decided(nodes) == 10, what="10 traces decided")
        assert backend.spans() == []  # both nodes (both workers of the second) drop all
        for node in nodes:
            assert node.terminate() == 0


def test_dns_membership_is_wired_end_to_end(tmp_path: Path) -> None:
    """A node whose DNS name resolves to itself only (an IP literal here: a second address would
    need a resolver of our own) serves as a one-member DNS cluster."""
    port = free_port()
    rules = tmp_path / "rules.yaml"
    rules.write_text(KEEP_ALL)
    with RecordingBackend() as backend:
        config = write_node_config(
            tmp_path, "dns", backend, [f"dns: 127.0.0.1:{port}", "dns_refresh: 1s"], peer_port=port
        )
        with RefineryProcess(config, rules) as node:
            assert members(node) == {
                "self": f"127.0.0.1:{port}",
                "members": [f"127.0.0.1:{port}"],
                "source": "dns",
            }
            traffic = SpreadTraffic(seed=51)
            send_traces(traffic, [address_of(node)], 5)
            wait_until(lambda: len(backend.spans()) == 30, what="every span exported")
            check_whole_once(backend, traffic)
            assert node.terminate() == 0
