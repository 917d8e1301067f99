"""Members in one event loop, each a real pipeline behind a real peer door on loopback.

What is tested here needs control a whole process does not give: a member whose door is down
while another queues for it, owners that disagree for a moment, a clock moved by hand.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from refinery_py.app.node import read_peer_body
from refinery_py.assemble import DecisionCache, TraceBuffer
from refinery_py.cluster.forwarding import Forwarder
from refinery_py.cluster.ownership import Placement, worker_of
from refinery_py.cluster.peer_door import PeerDoor
from refinery_py.config.rules import parse_rules
from refinery_py.decide.engine import RulesEngine
from refinery_py.model import Origin, SpanBatch
from refinery_py.otlp.batch_codec import encode_span_batch
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.pipeline import Pipeline
from refinery_py.telemetry import Metrics
from tests.cluster_support import KEEP_ALL, free_port, until
from tests.otlp_builders import request, span
from tests.pipeline_support import Clock, Collecting


class Member:
    """A pipeline with a forwarder and a peer door at `name` (127.0.0.1:port)."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        *,
        secret: str | None,
        queue: int,
        doors: tuple[str, ...] = (),
        worker: int = 0,
        max_request_bytes: int = 1 << 24,
        max_wait: float = 30.0,
        private_dir: Path | None = None,
        body_dir: Path | None = None,
    ) -> None:
        """`doors`: the worker doors of a node of several workers (`name` is the first), of
        which this is worker number `worker`. With `private_dir` the workers reach each other
        only by Unix sockets there (as a node's workers do), passing bodies as files in
        `body_dir` (None: over the sockets)."""
        self.name = name
        self.doors = doors or (name,)
        self.worker = worker
        self.metrics = Metrics()
        self.exported = Collecting()
        siblings = self.doors if doors else ()
        if private_dir is not None:
            siblings = tuple(f"unix:{private_dir / f'worker-{n}.peer'}" for n in range(len(doors)))
        self.forwarder = Forwarder(
            Placement([name], name, len(self.doors), worker),
            sibling_doors=siblings,
            metrics=self.metrics,
            secret=secret,
            queue_max_bytes=queue,
            max_wait=max_wait,
            body_dir=body_dir,
        )
        self.pipeline = Pipeline(
            buffer=TraceBuffer(
                send_delay=2.0,
                trace_timeout=30.0,
                span_limit=1000,
                decisions=DecisionCache(60.0, 1 << 20),
            ),
            decider=RulesEngine(parse_rules(KEEP_ALL, "r.yaml")),
            exporters=[self.exported],
            metrics=self.metrics,
            customer_fields=("customer.id",),
            max_memory=1 << 30,
            clock=clock,
            forwarder=self.forwarder,
        )
        host, port = self.doors[worker].rsplit(":", 1)
        self.door = PeerDoor(
            self.pipeline,
            metrics=self.metrics,
            tcp=None if private_dir else (host, int(port)),
            unix_path=private_dir / f"worker-{worker}.peer" if private_dir else None,
            doors=self.doors,
            worker=worker,
            secret=secret,
            max_request_bytes=max_request_bytes,
            read_body=read_peer_body,  # as a node's door reads
            body_files=private_dir is not None,
        )

    def place(self, nodes: list[str]) -> None:
        self.pipeline.set_placement(Placement(nodes, self.name, len(self.doors), self.worker))

    def metric(self, family: str, *labels: str) -> float:
        counter = getattr(self.metrics, family)
        child = counter.labels(*labels) if labels else counter
        return float(child._value.get())

    def buffered(self) -> set[bytes]:
        return set(self.pipeline.buffer.traces)


@asynccontextmanager
async def cluster(
    count: int,
    *,
    down: set[int] = frozenset(),
    secret: str | None = None,
    queue: int = 1 << 24,
    max_request_bytes: int = 1 << 24,
    max_wait: float = 30.0,
) -> AsyncIterator[tuple[list[Member], Clock]]:
    """`count` members that all know each other; those in `down` never open their door."""
    clock = Clock()
    names = [f"127.0.0.1:{free_port()}" for _ in range(count)]
    members = [
        Member(
            name,
            clock,
            secret=secret,
            queue=queue,
            max_request_bytes=max_request_bytes,
            max_wait=max_wait,
        )
        for name in names
    ]
    for index, member in enumerate(members):
        member.forwarder.start()
        if index not in down:
            await member.door.start()
        member.place(names)
    try:
        yield members, clock
    finally:
        for member in members:
            await member.forwarder.close(0.5)
            await member.door.stop()


def batch_of(traces: range, spans_each: int = 3) -> SpanBatch:
    spans = [
        span(trace, number, None if number == 1 else 1)
        for trace in traces
        for number in range(1, spans_each + 1)
    ]
    return split_request(request(*spans).SerializeToString(), OriginInterner())


def owned_by(member: Member, placement_nodes: list[str], traces: range) -> list[int]:
    placement = Placement(placement_nodes, member.name)
    return [t for t in traces if placement.node_of(t.to_bytes(16, "big")) == member.name]


async def test_spans_queued_for_a_member_that_leaves_go_to_the_new_owner() -> None:
    async with cluster(3, down={2}) as (members, _):
        a, b, c = members
        names = [m.name for m in members]
        for_c = owned_by(c, names, range(1, 200))[:10]
        for trace in for_c:
            assert a.pipeline.accept(batch_of(range(trace, trace + 1)), "grpc").accepted
        await asyncio.sleep(0.3)  # the link to c retries: c's door is down
        assert a.forwarder.queued_spans == 30
        a.place([a.name, b.name])  # c is gone
        b.place([a.name, b.name])
        ids = {t.to_bytes(16, "big") for t in for_c}
        await until(lambda: ids <= a.buffered() | b.buffered())
        assert a.forwarder.queued_spans == 0
        assert a.metric("forward_rerouted_spans") == 3 * len(ids & b.buffered())
        assert a.metric("forward_spans", "dropped_shutdown") == 0


async def test_a_member_that_cannot_take_more_gets_the_request_refused() -> None:
    async with cluster(2, down={1}, queue=4000) as (members, _):
        a, b = members
        names = [m.name for m in members]
        for_b = owned_by(b, names, range(1, 400))
        answers = [a.pipeline.accept(batch_of(range(t, t + 1)), "grpc") for t in for_b[:40]]
        refused = [answer for answer in answers if not answer.accepted]
        assert refused, "the queue for b filled up"
        assert "queueing up" in refused[0].message
        taken = sum(1 for answer in answers if answer.accepted)
        assert a.forwarder.queued_spans == 3 * taken  # refused requests left nothing behind
        assert not a.buffered()
        later = a.pipeline.clock() + 0.5
        assert a.pipeline.hold.cutoff(later) < later, "a's decisions wait for the refused spans"


async def test_requests_are_refused_while_forwarded_spans_wait_too_long() -> None:
    """Spans that wait in a link's queue past max_wait would reach their owner after it decided
    their trace: the front door refuses instead, however much room the queue has, and takes
    requests again once the queue has moved."""
    async with cluster(2, down={1}, max_wait=0.3) as (members, _):
        a, b = members
        names = [m.name for m in members]
        for_b = owned_by(b, names, range(1, 400))
        assert a.pipeline.accept(batch_of(range(for_b[0], for_b[0] + 1)), "grpc").accepted
        await asyncio.sleep(0.5)  # b's door is down: those spans wait
        answer = a.pipeline.accept(batch_of(range(for_b[1], for_b[1] + 1)), "grpc")
        assert not answer.accepted
        assert "have waited" in answer.message
        assert a.forwarder.queued_spans == 3  # the refused request left nothing behind
        await b.door.start()
        await until(lambda: a.forwarder.queued_spans == 0)
        assert a.pipeline.accept(batch_of(range(for_b[1], for_b[1] + 1)), "grpc").accepted
        await until(lambda: b.buffered() == {t.to_bytes(16, "big") for t in for_b[:2]})


async def test_an_undecided_trace_moves_with_its_deadline_and_a_decision_with_its_verdict() -> None:
    async with cluster(2) as (members, clock):
        a, b = members
        a.place([a.name])  # a thinks it is alone for now
        b.place([a.name])
        traces = owned_by(b, [a.name, b.name], range(1, 100))[:6]
        decided, waiting = traces[:3], traces[3:]
        for trace in decided:
            assert a.pipeline.accept(batch_of(range(trace, trace + 1)), "grpc").accepted
        clock.now += 2.0
        a.pipeline.decide_due()
        assert len(a.exported.traces) == 3
        clock.now += 1.0
        for trace in waiting:
            assert a.pipeline.accept(batch_of(range(trace, trace + 1)), "grpc").accepted
        clock.now += 1.0  # the waiting traces' roots came 1 s ago: due in 1 s
        both = [a.name, b.name]
        b.place(both)
        a.place(both)  # b joined: a hands over what b owns now
        ids = {t.to_bytes(16, "big") for t in waiting}
        await until(lambda: ids <= b.buffered())
        assert not a.buffered()
        clock.now += 0.9
        b.pipeline.decide_due()
        assert b.exported.traces == []
        clock.now += 0.1
        b.pipeline.decide_due()
        assert {t.trace_id for t in b.exported.traces} == ids
        # A late span of a trace a decided before b joined follows a's decision at b.
        late_trace = decided[0]
        await until(lambda: b.pipeline.decisions.get(late_trace.to_bytes(16, "big")) is not None)
        late = batch_of(range(late_trace, late_trace + 1), spans_each=1)
        late.root_positions.clear()
        assert b.pipeline.accept(late, "grpc").accepted
        b.pipeline.flush_exports()
        assert b.exported.traces[-1].send_reason.value == "trace_send_late_span"
        assert b.metric("handoff_traces", "in") == 3
        assert b.metric("handoff_decisions", "in") == 3
        # Counted out once, though a's link re-queued them when it learned b's worker doors.
        assert a.metric("handoff_traces", "out") == 3
        assert a.metric("forward_rerouted_spans") == 0


async def test_members_that_disagree_do_not_bounce_spans_forever() -> None:
    async with cluster(2) as (members, clock):
        a, b = members
        both = [a.name, b.name]
        trace = owned_by(b, both, range(1, 100))[0]
        # a routes by the shared view (b owns it), b still thinks it is alone without a.
        a.place(both)
        b.place([a.name])
        assert a.pipeline.accept(batch_of(range(trace, trace + 1)), "grpc").accepted
        trace_id = trace.to_bytes(16, "big")
        await until(lambda: trace_id in a.buffered())  # b passed it back; a keeps it (hop 2)
        assert a.metric("misplaced_spans") == 3
        assert b.metric("relayed_spans") == 3  # b passed on what it got, as it thought a owned it
        b.place(both)  # b catches up: b owns it, and a hands it over within a second
        clock.now += 1.0
        a.pipeline.decide_due()
        await until(lambda: trace_id in b.buffered())
        assert trace_id not in a.buffered()


async def test_the_first_spans_for_a_node_of_two_workers_go_straight_to_the_owning_worker() -> None:
    clock = Clock()
    node_a = f"127.0.0.1:{free_port()}"
    doors_b = (f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
    a = Member(node_a, clock, secret=None, queue=1 << 24)
    b0, b1 = (
        Member(doors_b[0], clock, secret=None, queue=1 << 24, doors=doors_b, worker=w)
        for w in (0, 1)
    )
    members = [a, b0, b1]
    nodes = [node_a, doors_b[0]]
    for member in members:
        member.forwarder.start()
        await member.door.start()
        member.place(nodes)
    try:
        b_owns = owned_by(b0, nodes, range(1, 400))
        placement = Placement(nodes, node_a)
        to_b1 = [t for t in b_owns if worker_of(t.to_bytes(16, "big"), 2) == 1][:10]
        assert placement.node_of(to_b1[0].to_bytes(16, "big")) == doors_b[0]
        for trace in to_b1:  # before a has heard anything from b
            assert a.pipeline.accept(batch_of(range(trace, trace + 1)), "grpc").accepted
        ids = {t.to_bytes(16, "big") for t in to_b1}
        await until(lambda: ids <= b1.buffered())
        assert b0.metric("cluster_spans", "received") == 0, "nothing went through b's worker 0"
        assert b0.metric("relayed_spans") == 0
        assert b1.metric("cluster_spans", "received") == 3 * len(ids)
    finally:
        for member in members:
            await member.forwarder.close(0.5)
            await member.door.stop()


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_the_peer_door_requires_the_cluster_secret(token: str | None) -> None:
    async with cluster(1, secret="s3cret") as (members, _):
        (member,) = members
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = encode_span_batch(batch_of(range(1, 2)))
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://{member.name}/peer/v1/spans", data=body, headers=headers
            ) as response,
        ):
            assert response.status == 401
        assert not member.buffered()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://{member.name}/peer/v1/spans",
                data=body,
                headers={"Authorization": "Bearer s3cret"},
            ) as response,
        ):
            assert response.status == 200
        assert member.buffered()


async def test_an_open_peer_door_checks_what_it_is_given() -> None:
    async with cluster(1) as (members, _):
        (member,) = members
        garbage = batch_of(range(1, 2))
        garbage.spans[0] = b"\xff\xff\xff"  # not a span at all
        async with aiohttp.ClientSession() as session:
            for body in (b"nonsense", encode_span_batch(garbage)):
                async with session.post(
                    f"http://{member.name}/peer/v1/spans", data=body
                ) as response:
                    assert response.status == 400
                    assert "error" in await response.json()
        assert not member.buffered()


@pytest.mark.parametrize("path", ["/peer/v1/spans", "/peer/v1/handoff", "/peer/v1/membership"])
async def test_a_compressed_body_at_the_peer_door_is_refused_not_a_500(path: str) -> None:
    """Found by the fault tests' fuzzer: the door let aiohttp inflate bodies, so a corrupt gzip
    stream raised inside the handler (500, and a traceback in the log). Members never
    compress; a compressed body is refused like any other that is not a record."""
    async with cluster(1) as (members, _):
        (member,) = members
        corrupt = bytearray(gzip.compress(encode_span_batch(batch_of(range(1, 2)))))
        corrupt[12] ^= 0xFF
        async with aiohttp.ClientSession() as session:
            for body in (bytes(corrupt), gzip.compress(encode_span_batch(batch_of(range(1, 2))))):
                async with session.post(
                    f"http://{member.name}{path}",
                    data=body,
                    headers={"Content-Encoding": "gzip"},
                ) as response:
                    assert response.status == 400
        assert not member.buffered()


@pytest.mark.parametrize("chunked", [False, True])
async def test_the_peer_door_takes_bodies_whole_and_refuses_them_past_its_limit(
    chunked: bool,
) -> None:
    """The door reads bodies as the front doors do (one copy, in the parser's chunks): a body
    sent in many small HTTP chunks arrives whole, and one past the limit gets a 413, with or
    without a Content-Length."""
    fits, too_big = batch_of(range(1, 40)), batch_of(range(1, 400))
    limit = len(encode_span_batch(fits)) + 100
    assert len(encode_span_batch(too_big)) > limit

    def sent(body: bytes) -> bytes | AsyncIterator[bytes]:
        if not chunked:
            return body

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        return pieces()

    async with cluster(1, max_request_bytes=limit) as (members, _):
        (member,) = members
        async with aiohttp.ClientSession() as session:
            url = f"http://{member.name}/peer/v1/spans"
            async with session.post(url, data=sent(encode_span_batch(too_big))) as response:
                assert response.status == 413
            assert not member.buffered()
            async with session.post(url, data=sent(encode_span_batch(fits))) as response:
                assert response.status == 200
        assert member.buffered() == set(fits.trace_ids)


async def test_spans_of_more_resources_than_a_record_holds_reach_their_owner() -> None:
    """A request may carry a resource per span. Its spans for another member once stopped that
    member's link for good (the encoder refused more than 65,535 resources in one record)."""
    async with cluster(2) as (members, _):
        a, b = members
        names = [m.name for m in members]
        traces = owned_by(b, names, range(1, 1000))[:100]
        template = batch_of(range(1, 1), spans_each=1)
        for trace in traces:
            one = batch_of(range(trace, trace + 1), spans_each=1)
            template.trace_ids += one.trace_ids
            template.spans += one.spans
        count = 700 * len(traces)  # at most 1,000 spans per trace here
        many = SpanBatch(
            template.trace_ids * 700,
            template.spans * 700,
            [Origin(b"\x1a\x08" + b"%08d" % n, b"") for n in range(count)],  # schema_url
        )
        assert a.pipeline.accept(many, "grpc").accepted
        await until(lambda: b.pipeline.buffer.span_count == count, timeout=30)
        assert a.metric("forward_spans", "delivered") == count


# ---- the workers of one node: bodies as files in their private directory ---------------------


@asynccontextmanager
async def two_workers(
    private_dir: Path, *, body_dir: Path | None
) -> AsyncIterator[tuple[Member, Member]]:
    """Two workers of one node, reaching each other's doors by Unix sockets in `private_dir`."""
    clock = Clock()
    name = f"127.0.0.1:{free_port()}"
    doors = (name, f"127.0.0.1:{free_port()}")
    workers = tuple(
        Member(
            name,
            clock,
            secret=None,
            queue=1 << 24,
            doors=doors,
            worker=n,
            private_dir=private_dir,
            body_dir=body_dir,
        )
        for n in (0, 1)
    )
    for worker in workers:
        worker.forwarder.start()
        await worker.door.start()
    try:
        yield workers[0], workers[1]
    finally:
        for worker in workers:
            await worker.forwarder.close(0.5)
            await worker.door.stop()


def traces_of_worker(worker: int, count: int) -> list[int]:
    return [t for t in range(1, 50 * count) if worker_of(t.to_bytes(16, "big"), 2) == worker][
        :count
    ]


def body_files(directory: Path, worker: int) -> set[str]:
    return {path.name for path in directory.glob(f"worker-{worker}-*.body")}


async def test_sibling_workers_leave_each_other_bodies_as_files(tmp_path: Path) -> None:
    async with two_workers(tmp_path, body_dir=tmp_path) as (w0, w1):
        for_w1 = traces_of_worker(1, 20)
        for trace in for_w1:
            assert w0.pipeline.accept(batch_of(range(trace, trace + 1), 5), "grpc").accepted
        ids = {t.to_bytes(16, "big") for t in for_w1}
        # Delivered: counted once the answer is in (the spans are buffered just before).
        await until(lambda: w0.metric("forward_spans", "delivered") == 5 * len(ids))
        assert ids <= w1.buffered()
        assert w1.metric("cluster_spans", "received") == 5 * len(ids)
        assert w0.metric("sibling_bodies", "file") >= 1
        assert w0.metric("sibling_bodies", "socket") == 0
        assert len(body_files(tmp_path, 0)) == 1, "one file for the link, written again and again"
    assert not body_files(tmp_path, 0), "a closed link removes its file"


async def test_bodies_go_over_the_socket_when_no_file_can_be_written(tmp_path: Path) -> None:
    """Where shared memory is full (or, as here, the directory is gone), nothing is lost: the
    body goes with the request, as it did before files."""
    async with two_workers(tmp_path, body_dir=tmp_path / "gone") as (w0, w1):
        for_w1 = traces_of_worker(1, 10)
        for trace in for_w1:
            assert w0.pipeline.accept(batch_of(range(trace, trace + 1)), "grpc").accepted
        ids = {t.to_bytes(16, "big") for t in for_w1}
        await until(lambda: w0.metric("forward_spans", "delivered") == 3 * len(ids))
        assert ids <= w1.buffered()
        assert w0.metric("sibling_bodies", "socket") >= 1
        assert w0.metric("sibling_bodies", "file") == 0
        assert w0.metric("forward_spans", "rejected") == 0


async def test_a_body_file_removed_from_under_a_link_is_replaced_and_the_spans_arrive(
    tmp_path: Path,
) -> None:
    """Something that cleans /dev/shm removes the link's file between two requests: the next
    request names a file the door cannot open (409), so the link moves to a new file and sends
    again; nothing is rejected or lost."""
    async with two_workers(tmp_path, body_dir=tmp_path) as (w0, w1):
        first, second = traces_of_worker(1, 2)
        assert w0.pipeline.accept(batch_of(range(first, first + 1)), "grpc").accepted
        await until(lambda: w0.metric("forward_spans", "delivered") == 3)
        (old,) = body_files(tmp_path, 0)
        (tmp_path / old).unlink()
        assert w0.pipeline.accept(batch_of(range(second, second + 1)), "grpc").accepted
        await until(lambda: w0.metric("forward_spans", "delivered") == 6)
        assert {first.to_bytes(16, "big"), second.to_bytes(16, "big")} <= w1.buffered()
        (new,) = body_files(tmp_path, 0)
        assert new != old
        assert w0.metric("forward_spans", "rejected") == 0
        assert w1.metric("cluster_spans", "received") == 6


async def test_the_peer_door_reads_body_files_only_from_its_workers_and_only_its_own(
    tmp_path: Path,
) -> None:
    async with two_workers(tmp_path, body_dir=tmp_path) as (_, w1):
        record = encode_span_batch(batch_of(range(1, 2)))
        (tmp_path / "worker-0-abc.body").write_bytes(record)
        secret = tmp_path.parent / "secret.body"
        secret.write_bytes(record)
        connector = aiohttp.UnixConnector(path=str(tmp_path / "worker-1.peer"))
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post(named: str) -> tuple[int, str]:
                headers = {"X-Refinery-Body": named}
                async with session.post(
                    "http://localhost/peer/v1/spans", data=b"", headers=headers
                ) as response:
                    return response.status, (await response.json())["error"]

            for bad in ("../secret.body:10", f"{secret}:10", "worker-0-abc.body:-1", "x.body:1"):
                status, error = await post(bad)
                assert status == 400 and "must be NAME:LENGTH" in error, bad
            status, error = await post(f"worker-0-abc.body:{len(record) + 1}")
            assert status == 409 and "holds" in error
            status, error = await post("worker-0-missing.body:10")
            assert status == 409 and "cannot be read" in error
            assert not w1.buffered()
    async with cluster(1) as (members, _):  # a door other nodes reach over TCP
        (member,) = members
        named = {"X-Refinery-Body": f"worker-0-abc.body:{len(record)}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://{member.name}/peer/v1/spans", headers=named) as response,
        ):
            assert response.status == 400
            assert "only from this node's workers" in (await response.json())["error"]
        assert not member.buffered()
