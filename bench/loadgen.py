"""Load generator: sender processes that post pre-built OTLP payloads, paced or flat out.

Each sender process loads one payload set (bench/payloads.py, its own seed) before any clock
starts, opens `connections` keep-alive connections (one thread each; OTLP/HTTP protobuf through
a raw socket, or OTLP/gRPC with raw bytes) and cycles through its requests, giving every replay
of the set fresh trace IDs. A shared pacer per process holds the offered rate (spans/s) to the
target, with 1 s of burst credit (a client's export queue) and no catch-up beyond that, so a
server that stalls for longer shows as achieved < offered; rate 0 means as fast as it answers.

A target is one port, or several behind a trace-ID-routing front: then the sender does what the
Collector's load_balancing exporter does, splitting each request by trace ID into one request per
port (`payloads.split_by_route`), and a request counts as accepted once every part is.

The runner drives the senders through phases over a pipe; a pause first finishes the replay in
progress, so no trace is left half-sent. A request counts in the phase during which its answer
arrived: accepted, rejected (HTTP 429/503, gRPC RESOURCE_EXHAUSTED; the sender waits the
Retry-After / RetryInfo delay, then retries the same request) or failed. Every accepted request
is also logged as (request index, replay epoch, ack time) so the runner can tell when the
request carrying each trace's root span was acknowledged (decision latency starts there).
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from bench import allocator
from bench.otlp_clients import GrpcClient, HttpClient, Outcome, http_head
from bench.payloads import PayloadSet, cut_at_epochs, epoch_tag, split_by_route, trace_id_offsets
from bench.payloads import load as load_payloads

BURST_SECONDS = 1.0
MAX_RETRY_WAIT = 5.0
PAUSE_TIMEOUT = 60.0
MAX_FAILURES = 100
"""Failed attempts (not refusals) at one request before it is given up (about 5 s)."""


@dataclass
class PhaseStats:
    """What the senders saw during one phase."""

    started: float = 0.0
    ended: float = 0.0
    accepted_requests: int = 0
    accepted_spans: int = 0
    rejected_requests: int = 0
    failed_requests: int = 0
    request_seconds: float = 0.0
    """Time spent waiting for answers, summed over connections (÷ phase length = concurrency)."""
    slowest_request: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return max(1e-9, self.ended - self.started)

    @property
    def spans_per_second(self) -> float:
        return self.accepted_spans / self.seconds

    def merge(self, other: PhaseStats) -> PhaseStats:
        return PhaseStats(
            started=min(self.started, other.started) if self.started else other.started,
            ended=max(self.ended, other.ended),
            accepted_requests=self.accepted_requests + other.accepted_requests,
            accepted_spans=self.accepted_spans + other.accepted_spans,
            rejected_requests=self.rejected_requests + other.rejected_requests,
            failed_requests=self.failed_requests + other.failed_requests,
            request_seconds=self.request_seconds + other.request_seconds,
            slowest_request=max(self.slowest_request, other.slowest_request),
            errors=(self.errors + other.errors)[:5],
        )


class Pacer:
    """Spaces requests so their spans add up to `rate` per second (0: no pacing).

    A thread takes the next free slot and sleeps until it; if the rate changed meanwhile, it
    takes a slot in the new schedule instead, so a new phase never inherits the old one's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rate = 0.0
        self._next = 0.0
        self._generation = 0

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._rate = rate
            self._next = time.monotonic()
            self._generation += 1

    def wait(self, spans: int) -> None:
        while True:
            with self._lock:
                if self._rate <= 0:
                    return
                now = time.monotonic()
                start = max(self._next, now - BURST_SECONDS)
                self._next = start + spans / self._rate
                generation = self._generation
            if start <= now:
                return
            time.sleep(start - now)
            with self._lock:
                if generation == self._generation:
                    return


class _Sender:
    """The state one sender process shares between its control loop and its threads.

    Requests are numbered; number n is request n % len(requests) of replay epoch
    n // len(requests). A replay holds whole traces, but inside one a trace's spans are spread
    over neighbouring requests, so a pause lets the threads finish the current epoch (at the
    phase's rate, retrying rejections) before they go idle: no trace is left half-sent while the
    runner waits for the server to drain.
    """

    def __init__(self, protocol: str, payloads: PayloadSet) -> None:
        self.protocol = protocol
        self.payloads = payloads
        self.spans = payloads.span_counts
        self._routed: dict[int, list[list[tuple[int, list[bytes]]]]] = {}
        self.requests = self.routed(1)
        self.lock = threading.Lock()
        self.active = threading.Event()
        """Set while a phase runs or the current epoch is being finished."""
        self.finishing = False
        self.stopping = False
        self.pacer = Pacer()
        self.next_number = len(payloads.bodies)  # epoch 0 is never sent
        self.in_flight = 0
        self.target: tuple[str, tuple[int, ...]] = ("127.0.0.1", (0,))
        self.generation = 0
        self.phase: str | None = None
        self.stats: dict[str, PhaseStats] = {}
        self.acks: list[tuple[int, int, float]] = []

    def routed(self, routes: int) -> list[list[tuple[int, list[bytes]]]]:
        """Per request, its (port index, body cut at the trace IDs' epoch bytes) parts."""
        if routes not in self._routed:
            payloads = self.payloads
            if routes == 1:  # the payload set's own index has the offsets
                requests = [
                    [(0, self._cut(body, offsets))]
                    for body, offsets in zip(
                        payloads.bodies, payloads.trace_id_offsets, strict=True
                    )
                ]
            else:
                requests = [
                    [
                        (route, self._cut(part, trace_id_offsets(part)))
                        for route, part in enumerate(split_by_route(body, routes))
                        if part
                    ]
                    for body in payloads.bodies
                ]
            self._routed[routes] = requests
        return self._routed[routes]

    def _cut(self, body: bytes, offsets: list[int]) -> list[bytes]:
        pieces = cut_at_epochs(body, offsets)
        if self.protocol == "http":
            pieces[0] = http_head(len(body)) + pieces[0]
        return pieces

    def point(self, host: str, ports: tuple[int, ...]) -> None:
        """Send to `ports` from now on (a trace-ID-routing front when there are several)."""
        with self.lock:
            self.requests = self.routed(len(ports))
            self.target = (host, ports)
            self.generation += 1

    def connect(self) -> tuple[list[HttpClient | GrpcClient], int]:
        """One client per port of the current target, and the target's generation."""
        with self.lock:
            (host, ports), generation = self.target, self.generation
        kind = HttpClient if self.protocol == "http" else GrpcClient
        return [kind(host, port) for port in ports], generation

    def claim(self) -> tuple[int, int] | None:
        """(epoch, request index) to send next, or None once a pause reached an epoch's end."""
        with self.lock:
            epoch, index = divmod(self.next_number, len(self.requests))
            if self.finishing and index == 0:
                self.active.clear()
                return None
            self.next_number += 1
            self.in_flight += 1
            return epoch, index

    def record(self, outcome: Outcome, index: int, epoch: int, sent: float, last: bool) -> None:
        """One attempt at one part of request `index`; `last`: its last part."""
        now = time.monotonic()
        with self.lock:
            if outcome.accepted and last:
                self.acks.append((index, epoch, now))
            stats = self.stats.get(self.phase) if self.phase else None
            if stats is None:
                return
            stats.request_seconds += now - sent
            stats.slowest_request = max(stats.slowest_request, now - sent)
            if outcome.accepted:
                if last:
                    stats.accepted_requests += 1
                    stats.accepted_spans += self.spans[index]
            elif outcome.rejected:
                stats.rejected_requests += 1
            else:
                stats.failed_requests += 1
                if len(stats.errors) < 5:
                    stats.errors.append(outcome.error)

    def wait_idle(self, timeout: float) -> None:
        """After a pause: wait until the epoch is finished and nothing is in flight."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.active.is_set() and not self.in_flight:
                    return
            time.sleep(0.01)

    def switch(self, phase: str | None, rate: float) -> None:
        """Start phase `phase` at `rate`; None pauses (after finishing the epoch)."""
        now = time.monotonic()
        with self.lock:
            if self.phase is not None:
                self.stats[self.phase].ended = now
            self.phase = phase
            self.finishing = phase is None
            if phase is not None:
                self.stats[phase] = PhaseStats(started=now)
                self.pacer.set_rate(rate)
            self.active.set()

    def send_loop(self) -> None:
        connection = _Connection(self)
        while not self.stopping:
            if not self.active.wait(0.1) or self.stopping:
                continue
            connection.follow_target()
            claimed = self.claim()
            if claimed is None:
                continue
            epoch, index = claimed
            tag = epoch_tag(epoch)
            parts = self.requests[index]
            self.pacer.wait(self.spans[index])
            for number, (route, pieces) in enumerate(parts):
                last = number == len(parts) - 1
                if not self._deliver(connection, route, tag.join(pieces), (index, epoch), last):
                    break
            with self.lock:
                self.in_flight -= 1
        connection.close()

    def _deliver(
        self, connection: _Connection, route: int, body: bytes, request: tuple[int, int], last: bool
    ) -> bool:
        """Post one part until it is accepted (True), given up on, or the sender stops."""
        failures = 0
        while not self.stopping:
            sent = time.monotonic()
            outcome = connection.clients[route].post(body)
            self.record(outcome, *request, sent, last)
            if outcome.accepted:
                return True
            if not outcome.rejected:
                # A connection that failed (a server going away, say) is retried on a fresh
                # one, to the current target, as an SDK's exporter would; a server that keeps
                # failing is given up on after a while, without a busy loop.
                failures += 1
                if failures > MAX_FAILURES:
                    return False
                time.sleep(0.05)
                connection.reconnect()
                continue
            time.sleep(min(outcome.retry_after, MAX_RETRY_WAIT))
        return False


class _Connection:
    """One sender thread's clients, one per port of the sender's current target."""

    def __init__(self, sender: _Sender) -> None:
        self.sender = sender
        self.clients: list[HttpClient | GrpcClient] = []
        self.generation = -1

    def follow_target(self) -> None:
        if self.generation != self.sender.generation or not self.clients:
            self.reconnect()

    def reconnect(self) -> None:
        self.close()
        self.clients, self.generation = self.sender.connect()

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.clients = []


def sender_main(protocol: str, connections: int, traces: int, seed: int, conn: Connection) -> None:
    """A sender process: load payloads, then obey the runner's commands until `stop`."""
    allocator.tune()  # large request buffers: no mmap and page faults per request
    payloads = load_payloads(traces, seed)
    sender = _Sender(protocol, payloads)
    threads = [threading.Thread(target=sender.send_loop, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    conn.send(("ready", payloads.spans, len(payloads.bodies)))
    while True:
        command, *args = conn.recv()
        if command == "target":
            sender.point(args[0], tuple(args[1]))
        elif command == "phase":
            sender.switch(args[0], args[1])
        elif command == "pause":
            sender.switch(None, 0.0)
            sender.wait_idle(PAUSE_TIMEOUT)
        elif command == "report":
            with sender.lock:
                if sender.phase == args[0]:  # still running: end it, keep sending meanwhile
                    sender.stats[args[0]].ended = time.monotonic()
                    sender.phase = None
                conn.send((sender.stats.pop(args[0], PhaseStats()), sender.acks))
                sender.acks = []
            continue
        elif command == "stop":
            sender.stopping = True
            sender.active.set()
            for thread in threads:
                thread.join(5)
        conn.send(("ok", time.monotonic()))
        if command == "stop":
            return


class Senders:
    """The sender processes, seen from the runner: point, pace, pause, report."""

    def __init__(
        self, protocol: str, processes: int, connections: int, traces: int, seed: int = 1000
    ) -> None:
        context = mp.get_context("spawn")  # no inherited grpc or event-loop state
        self.seeds = [seed + k for k in range(processes)]
        self.pipes: list[Connection] = []
        self.processes = []
        for k in range(processes):
            parent, child = context.Pipe()
            process = context.Process(
                target=sender_main,
                args=(protocol, connections, traces, self.seeds[k], child),
                name=f"bench-sender-{k}",
                daemon=True,
            )
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        replies = []
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            while not pipe.poll(1.0):
                if not process.is_alive():
                    self.close()
                    raise RuntimeError(f"{process.name} died while loading its payloads")
            replies.append(pipe.recv())
        self.spans = sum(reply[1] for reply in replies)
        self.requests = sum(reply[2] for reply in replies)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def _all(self, *command: object) -> None:
        for pipe in self.pipes:
            pipe.send(command)
        for pipe in self.pipes:
            pipe.recv()

    def target(self, host: str, *ports: int) -> None:
        """Send to `host`: to one port, or split by trace ID over several (a routing front)."""
        self._all("target", host, ports)

    def phase(self, name: str, rate: float) -> None:
        """Start phase `name` at `rate` spans/s in all (0: as fast as accepted)."""
        self._all("phase", name, rate / len(self.pipes))

    def pause(self) -> None:
        self._all("pause")

    def report(self, name: str) -> tuple[PhaseStats, list[tuple[int, int, int, float]]]:
        """The phase's merged stats, and (sender, request, epoch, ack time) since last report."""
        merged = PhaseStats()
        acks: list[tuple[int, int, int, float]] = []
        for pipe in self.pipes:
            pipe.send(("report", name))
        for sender, pipe in enumerate(self.pipes):
            stats, sender_acks = pipe.recv()
            merged = merged.merge(stats)
            acks.extend((sender, index, epoch, at) for index, epoch, at in sender_acks)
        return merged, acks

    def close(self) -> None:
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            if process.is_alive():
                try:
                    pipe.send(("stop",))
                    pipe.poll(10) and pipe.recv()
                except (OSError, EOFError):
                    pass
            process.join(5)
            if process.is_alive():
                process.kill()
