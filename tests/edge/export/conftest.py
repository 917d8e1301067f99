"""Fixtures: a fresh metrics registry and started loopback backends, always stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from refinery_py.telemetry import Metrics

from .backends import GrpcBackend, HttpBackend, RecordingBackend


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def grpc_backend() -> AsyncIterator[GrpcBackend]:
    backend = GrpcBackend()
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


@pytest.fixture
async def http_backend() -> AsyncIterator[HttpBackend]:
    backend = HttpBackend()
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


@pytest.fixture(params=["grpc", "http"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[RecordingBackend]:
    """Each protocol's backend in turn, for behaviour both transports must share."""
    started: GrpcBackend | HttpBackend = GrpcBackend() if request.param == "grpc" else HttpBackend()
    await started.start()
    try:
        yield started
    finally:
        await started.stop()
