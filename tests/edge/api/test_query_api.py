"""The query API end to end over HTTP: a real server, a real store file, a real client."""

from __future__ import annotations

import re
from pathlib import Path

from refinery_py.model import Decision, SendReason
from tests.edge.api.harness import running_api
from tests.edge.store.builders import BASE_NS, TraceSpec, late_spans, trace_id_of

SECOND = 10**9
RFC3339_NANOS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")


def hex_id(number: int) -> str:
    return trace_id_of(number).hex()


async def test_a_customer_query_never_returns_another_customers_trace(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        names = ["acme", "globex", "", "acme "]
        api.store(
            *[
                TraceSpec(
                    n,
                    customer=names[n % 4],
                    customer_attribute=bool(names[n % 4]),
                    start_ns=BASE_NS + n * SECOND,
                    error=n % 5 == 0,
                )
                for n in range(1, 41)
            ]
        )
        for customer in names:
            expected = [hex_id(n) for n in range(40, 0, -1) if names[n % 4] == customer]
            body = await api.ok("/api/v1/traces", {"customer": customer, "limit": "1000"})
            assert [t["trace_id"] for t in body["traces"]] == expected
            assert {t["customer"] for t in body["traces"]} == {customer}
            errors = await api.ok("/api/v1/traces", {"customer": customer, "error": "true"})
            assert {t["customer"] for t in errors["traces"]} <= {customer}
            summary = await api.ok(f"/api/v1/customers/{customer}/summary")
            assert summary["customer"] == customer
            assert summary["kept_traces"] == len(expected)
        everyone = await api.ok("/api/v1/traces", {"limit": "1000"})
        assert len(everyone["traces"]) == 40


async def test_summaries_count_a_trace_kept_1_in_10_as_10(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        api.store(*[TraceSpec(n, rate=10, route="/browse", duration_ms=20) for n in range(1, 31)])
        api.store(
            *[
                TraceSpec(n, rate=1, route="/pay", error=True, duration_ms=900)
                for n in range(31, 36)
            ]
        )
        api.store(TraceSpec(99, customer="other", rate=1000))
        summary = await api.ok("/api/v1/customers/acme/summary")
        assert summary == {
            "customer": "acme",
            "kept_traces": 35,
            "estimated_traces": 305,
            "estimated_errors": 5,
            "error_rate": round(5 / 305, 6),
            "duration_ms": {"p50": 20.0, "p95": 20.0, "p99": 900.0},
            "top_routes": [
                {"name": "/browse", "kept_traces": 30, "estimated_traces": 300},
                {"name": "/pay", "kept_traces": 5, "estimated_traces": 5},
            ],
            "top_errors": [
                {"name": "db.query 1", "message": "failed", "kept_traces": 5, "estimated_traces": 5}
            ],
        }
        customers = await api.ok("/api/v1/customers")
        assert [(c["customer"], c["estimated_traces"]) for c in customers["customers"]] == [
            ("other", 1000),
            ("acme", 305),
        ]


async def test_pages_stay_stable_while_traces_are_inserted_between_them(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        api.store(*[TraceSpec(n, start_ns=BASE_NS + n * SECOND) for n in range(100, 125)])
        original = {hex_id(n) for n in range(100, 125)}
        seen: list[dict[str, object]] = []
        params = {"customer": "acme", "limit": "10"}
        body = await api.ok("/api/v1/traces", params)
        seen.extend(body["traces"])
        # Between pages: newer traces, a trace tied with the last one seen, and older traces.
        last_start = BASE_NS + 115 * SECOND
        api.store(*[TraceSpec(n, start_ns=BASE_NS + (200 + n) * SECOND) for n in range(1, 6)])
        api.store(TraceSpec(999, start_ns=last_start))  # ties, but sorts above by trace ID
        api.store(TraceSpec(50, start_ns=BASE_NS + 50 * SECOND))
        pages = 1
        while body["next_cursor"] is not None:
            body = await api.ok("/api/v1/traces", {**params, "cursor": body["next_cursor"]})
            seen.extend(body["traces"])
            pages += 1
            api.store(TraceSpec(1000 + pages, start_ns=BASE_NS + 300 * SECOND))
        ids = [str(t["trace_id"]) for t in seen]
        assert len(ids) == len(set(ids)), "no trace appears twice"
        assert original <= set(ids), "no trace that was there is skipped"
        assert hex_id(50) in ids, "an older trace inserted meanwhile is on a later page"
        assert not {hex_id(n) for n in range(1, 6)} & set(ids), "newer ones do not shift pages"
        assert hex_id(999) not in ids
        keys = [(str(t["start_time"]), str(t["trace_id"])) for t in seen]
        assert keys == sorted(keys, reverse=True), "newest first, across pages"
        assert pages == 3


async def test_filters_and_the_shape_of_a_listed_trace(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        api.store(
            *[
                TraceSpec(
                    k + 1,
                    start_ns=BASE_NS + k * 600 * SECOND,
                    service="web" if k % 2 else "api",
                    duration_ms=10.0 * (k + 1),
                    error=k == 4,
                    rate=k + 1,
                )
                for k in range(7)
            ]
        )

        async def matching(**params: str) -> list[int]:
            body = await api.ok("/api/v1/traces", params)
            return [int(t["trace_id"], 16) for t in body["traces"]]

        assert await matching(since="30m") == [7, 6, 5, 4], "30 minutes before the API's clock"
        assert await matching(since="2026-09-21T14:30:00Z", until="2026-09-21T14:40:00Z") == [3]
        assert await matching(until="2026-09-21T16:23:20.000000001+02:00") == [2, 1]
        assert await matching(service="web") == [6, 4, 2]
        assert await matching(error="true") == [5]
        assert await matching(min_duration_ms="55.5") == [7, 6]
        assert await matching(name="/api/orders", limit="2") == [7, 6]
        body = await api.ok("/api/v1/traces", {"limit": "1"})
        [listed] = body["traces"]
        assert set(listed) == {
            "trace_id",
            "customer",
            "service",
            "name",
            "route",
            "start_time",
            "duration_ms",
            "error",
            "span_count",
            "sample_rate",
            "reason",
        }
        assert RFC3339_NANOS.fullmatch(listed["start_time"])
        assert listed["start_time"] == "2026-09-21T15:13:20.000000000Z"
        assert listed["duration_ms"] == 70.0
        assert (listed["span_count"], listed["sample_rate"], listed["error"]) == (3, 7, False)
        assert isinstance(body["next_cursor"], str)


async def test_bad_parameters_get_400_naming_the_parameter(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        cases = [
            ("/api/v1/traces", {"limit": "0"}, "limit"),
            ("/api/v1/traces", {"limit": "many"}, "limit"),
            ("/api/v1/traces", {"limit": "1001"}, "limit"),
            ("/api/v1/traces", {"since": "yesterday"}, "since"),
            ("/api/v1/traces", {"until": "2026-13-01T00:00:00Z"}, "until"),
            ("/api/v1/traces", {"since": "1h", "until": "2h"}, "until"),
            ("/api/v1/traces", {"error": "maybe"}, "error"),
            ("/api/v1/traces", {"min_duration_ms": "-1"}, "min_duration_ms"),
            ("/api/v1/traces", {"min_duration_ms": "nan"}, "min_duration_ms"),
            ("/api/v1/traces", {"cursor": "not-a-cursor!"}, "cursor"),
            ("/api/v1/traces", {"errors": "true"}, "errors"),
            ("/api/v1/traces", [("service", "a"), ("service", "b")], "service"),
            ("/api/v1/traces/xyz", None, "trace_id"),
            ("/api/v1/traces/" + "g" * 32, None, "trace_id"),
            ("/api/v1/customers/acme/summary", {"since": "soon"}, "since"),
            ("/api/v1/customers/acme/summary", {"limit": "3"}, "limit"),
            ("/api/v1/customers", {"limit": "-4"}, "limit"),
        ]
        for path, params, name in cases:
            status, body = await api.get(path, params)
            assert status == 400, (path, params, body)
            assert body["error"].startswith(f"{name}: "), body
        _, body = await api.get("/api/v1/traces", {"errors": "true"})
        assert "did you mean 'error'" in body["error"]


async def test_a_stored_trace_comes_back_with_its_spans_and_decision(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        api.store(TraceSpec(7, service="checkout", rate=4, reason="rules/trace/sample 1 in 4"))
        assert api.writer is not None
        api.writer.write([late_spans(7, 1)])
        # The decision cache may still hold the decision; the stored row answers first.
        api.decisions.record(trace_id_of(7), Decision(True, 4, "cached"), SendReason.GOT_ROOT, 0)
        body = await api.ok(f"/api/v1/traces/{hex_id(7).upper()}")
        assert body["trace_id"] == hex_id(7)
        assert body["decision"] == {
            "kept": True,
            "sample_rate": 4,
            "reason": "rules/trace/sample 1 in 4",
            "send_reason": "trace_send_got_root",
        }
        spans = body["spans"]
        assert [s["name"] for s in spans] == [
            "GET /api/orders",
            "db.query 0",
            "db.query 1",
            "late 0",
        ]
        root = spans[0]
        assert root["traceId"] == hex_id(7)
        assert root["spanId"] == "0000000000000001"
        assert "parentSpanId" not in root
        assert spans[1]["parentSpanId"] == "0000000000000001"
        assert {"key": "service.name", "value": {"stringValue": "checkout"}} in root["resource"][
            "attributes"
        ]
        assert root["scope"]["name"] == "test.scope"


async def test_a_dropped_trace_in_the_decision_cache_is_200_without_spans(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        api.decisions.record(
            trace_id_of(5),
            Decision(False, 10, "rules/trace/sample the rest"),
            SendReason.GOT_ROOT,
            0,
        )
        body = await api.ok(f"/api/v1/traces/{hex_id(5)}")
        assert body == {
            "trace_id": hex_id(5),
            "decision": {
                "kept": False,
                "sample_rate": 10,
                "reason": "rules/trace/sample the rest",
                "send_reason": "trace_send_got_root",
            },
            "spans": [],
        }
        status, missing = await api.get(f"/api/v1/traces/{hex_id(6)}")
        assert status == 404
        assert hex_id(6) in missing["error"]


async def test_the_empty_customer_and_odd_names_have_summary_urls(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        api.store(TraceSpec(1, customer="", customer_attribute=False, rate=3))
        api.store(TraceSpec(2, customer="team/a b", rate=5))
        empty = await api.ok("/api/v1/customers//summary")
        assert (empty["customer"], empty["estimated_traces"]) == ("", 3)
        odd = await api.ok("/api/v1/customers/team%2Fa%20b/summary")
        assert (odd["customer"], odd["estimated_traces"]) == ("team/a b", 5)
        listed = await api.ok("/api/v1/traces", {"customer": ""})
        assert [t["trace_id"] for t in listed["traces"]] == [hex_id(1)]


async def test_with_the_store_off_queries_say_so_and_lookups_use_the_cache(
    tmp_path: Path,
) -> None:
    async with running_api(tmp_path, with_store=False) as api:
        for path in ("/api/v1/traces", "/api/v1/customers", "/api/v1/customers/acme/summary"):
            status, body = await api.get(path)
            assert status == 503
            assert "store.path is null" in body["error"]
        api.decisions.record(trace_id_of(3), Decision(True, 2, "keep"), SendReason.EXPIRED, 0)
        body = await api.ok(f"/api/v1/traces/{hex_id(3)}")
        assert body["decision"]["kept"] is True
        assert body["spans"] == []
        status, _ = await api.get(f"/api/v1/traces/{hex_id(4)}")
        assert status == 404
