"""Bad requests are logged, but at most once per interval and reason."""

from __future__ import annotations

import logging

import pytest

from refinery_py.otlp.ingest import OriginInterner
from refinery_py.receive import Encoding, Intake
from refinery_py.telemetry import Metrics
from refinery_py.telemetry.throttled_log import ThrottledLog

from .support import FakeSink, FrozenClock, good_request, mixed_request

LOGGER = "refinery_py.receive"


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


def test_one_line_per_key_per_interval_then_a_count_of_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FrozenClock()
    log = ThrottledLog(logging.getLogger(LOGGER), interval=5.0, clock=clock)
    with caplog.at_level(logging.WARNING, LOGGER):
        for _ in range(3):
            log.report("a", "bad a")
        log.report("b", "bad b")
        clock.now += 4.9
        log.report("a", "bad a")
        clock.now += 0.1
        log.report("a", "bad a again")
        log.report("a", "bad a")

    assert messages(caplog) == ["bad a", "bad b", "bad a again (3 more like it not logged)"]


def test_a_flood_of_bad_requests_logs_one_line_per_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FrozenClock()
    sink = FakeSink()
    log = ThrottledLog(logging.getLogger(LOGGER), interval=5.0, clock=clock)
    intake = Intake(sink, OriginInterner(), Metrics(), log)
    with caplog.at_level(logging.WARNING, LOGGER):
        for _ in range(100):
            intake.take(b"garbage", Encoding.PROTOBUF, "grpc")
            intake.take(mixed_request().SerializeToString(), Encoding.PROTOBUF, "grpc")
            assert intake.take(good_request(), Encoding.PROTOBUF, "grpc").refusal is None

    logged = messages(caplog)
    assert len(logged) == 2
    assert logged[0].startswith("grpc request refused (malformed): ")
    assert logged[1].startswith("grpc: 2 span(s) rejected")
    assert len(sink.batches) == 200
