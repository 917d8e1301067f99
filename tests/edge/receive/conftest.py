"""Loopback receivers on port 0 in front of a fake pipeline that records batches or refuses them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from refinery_py.otlp.ingest import OriginInterner
from refinery_py.receive import GrpcReceiver, HttpReceiver, Intake
from refinery_py.telemetry import Metrics
from refinery_py.telemetry.throttled_log import ThrottledLog

from .support import FakeSink, FrozenClock


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def intake(sink: FakeSink, metrics: Metrics, clock: FrozenClock) -> Intake:
    log = ThrottledLog(logging.getLogger("refinery_py.receive"), interval=5.0, clock=clock)
    return Intake(sink, OriginInterner(), metrics, log)


ReceiverFactory = Callable[..., Awaitable[int]]


@pytest.fixture
async def start_grpc(intake: Intake) -> AsyncIterator[ReceiverFactory]:
    """Start a GrpcReceiver on 127.0.0.1:0 (optionally with a size limit); returns its port."""
    started: list[GrpcReceiver] = []

    async def start(**kwargs: int) -> int:
        receiver = GrpcReceiver(intake, "127.0.0.1", 0, **kwargs)
        await receiver.start()
        started.append(receiver)
        return receiver.port

    yield start
    for receiver in started:
        await receiver.stop(1.0)


@pytest.fixture
async def start_http(intake: Intake) -> AsyncIterator[ReceiverFactory]:
    """Start an HttpReceiver on 127.0.0.1:0 (optionally with a size limit); returns its port."""
    started: list[HttpReceiver] = []

    async def start(**kwargs: int) -> int:
        receiver = HttpReceiver(intake, "127.0.0.1", 0, **kwargs)
        await receiver.start()
        started.append(receiver)
        return receiver.port

    yield start
    for receiver in started:
        await receiver.stop(1.0)
