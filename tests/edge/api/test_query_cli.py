"""`refinery-py query`: against a real API server, and against a store file directly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from refinery_py.cli import main
from refinery_py.store import StoreWriter, open_for_writing
from tests.edge.api.harness import running_api
from tests.edge.store.builders import BASE_NS, TraceSpec, kept_trace, late_spans, trace_id_of

SECOND = 10**9


@pytest.fixture
def store_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "traces.db"
    conn = open_for_writing(path)
    try:
        writer = StoreWriter(conn, retention=86400.0, max_bytes=1 << 30)
        specs = [
            TraceSpec(
                n,
                customer="acme" if n % 2 else "globex",
                start_ns=BASE_NS + n * SECOND,
                error=n % 3 == 0,
                rate=10,
            )
            for n in range(1, 13)
        ]
        writer.write([kept_trace(spec) for spec in specs])
        writer.write([late_spans(3, 1)])
        yield path
    finally:
        conn.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["query", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_traces_from_a_store_file_as_json_and_as_a_table(
    store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "traces", "--store", str(store_file), "--customer", "acme", "--errors", "--json"
    )
    assert code == 0
    document = json.loads(out)
    assert [t["trace_id"] for t in document["traces"]] == [trace_id_of(n).hex() for n in (9, 3)]
    assert document["next_cursor"] is None
    code, out, _ = run(capsys, "traces", "--store", str(store_file), "--limit", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "START",
        "(UTC)",
        "DURATION",
        "ERROR",
        "SPANS",
        "RATE",
        "CUSTOMER",
        "SERVICE",
        "NAME",
        "TRACE",
    ]
    assert trace_id_of(12).hex() in lines[1]
    assert "globex" in lines[1]
    assert lines[-1].startswith("more: add --cursor ")
    cursor = lines[-1].split()[-1]
    code, out, _ = run(
        capsys, "traces", "--store", str(store_file), "--limit", "2", "--cursor", cursor, "--json"
    )
    assert [t["trace_id"] for t in json.loads(out)["traces"]] == [
        trace_id_of(n).hex() for n in (10, 9)
    ]


def test_summary_trace_and_customers_from_a_store_file(
    store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "summary", "acme", "--store", str(store_file), "--json")
    assert code == 0
    summary = json.loads(out)
    assert (summary["kept_traces"], summary["estimated_traces"]) == (6, 60)
    assert summary["estimated_errors"] == 20
    code, out, _ = run(capsys, "summary", "acme", "--store", str(store_file))
    assert "estimated traces" in out
    assert "60" in out
    assert "TOP ROUTES" in out
    assert "TOP ERRORS" in out
    code, out, _ = run(capsys, "trace", trace_id_of(3).hex(), "--store", str(store_file))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"trace {trace_id_of(3).hex()}: kept at rate 10")
    assert lines[2].startswith("GET /api/orders  [shop]")
    assert any(line.startswith("  db.query 0  [shop]") for line in lines), "children indented"
    assert "ERROR failed" in out
    assert any(line.startswith("  late 0") for line in lines)
    code, out, _ = run(capsys, "customers", "--store", str(store_file), "--json")
    assert [c["customer"] for c in json.loads(out)["customers"]] == ["acme", "globex"]
    code, out, _ = run(capsys, "customers", "--store", str(store_file))
    assert out.splitlines()[1].startswith("acme")


def test_failures_exit_1_with_the_reason(
    store_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "trace", "00" * 16, "--store", str(store_file))
    assert (code, err.strip()) == (1, f"error: 404: trace {'00' * 16} is not in the store")
    code, _, err = run(capsys, "traces", "--store", str(store_file), "--since", "then")
    assert code == 1
    assert err.startswith("error: 400: since: ")
    code, _, err = run(capsys, "traces", "--store", str(tmp_path / "missing.db"))
    assert code == 1
    assert "no store" in err
    code, _, err = run(capsys, "traces", "--api", "http://127.0.0.1:9")
    assert code == 1
    assert err.startswith("error: cannot reach the API at http://127.0.0.1:9")


async def test_the_cli_asks_a_running_node_with_its_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_api(tmp_path, token="tok") as api:
        api.store(*[TraceSpec(n, customer="acme", rate=10) for n in range(1, 4)])
        api.store(TraceSpec(4, customer="", customer_attribute=False))

        async def cli(*argv: str) -> tuple[int, str, str]:
            # The CLI is synchronous; run it off the loop that serves the API.
            code = await asyncio.to_thread(main, ["query", *argv, "--api", api.base_url])
            captured = capsys.readouterr()
            return code, captured.out, captured.err

        code, _, err = await cli("traces")
        assert code == 1
        assert err.startswith("error: 401: ")
        code, out, _ = await cli("traces", "--customer", "acme", "--json", "--token", "tok")
        assert code == 0
        assert len(json.loads(out)["traces"]) == 3
        monkeypatch.setenv("REFINERY_API_TOKEN", "tok")
        code, out, _ = await cli("summary", "acme", "--json")
        assert json.loads(out)["estimated_traces"] == 30
        code, out, _ = await cli("summary", "", "--json")
        assert json.loads(out)["kept_traces"] == 1
        code, out, _ = await cli("traces", "--customer", "", "--json")
        assert [t["trace_id"] for t in json.loads(out)["traces"]] == [trace_id_of(4).hex()]
        code, out, _ = await cli("trace", trace_id_of(2).hex())
        assert code == 0
        assert "kept at rate 10" in out
        code, out, _ = await cli("customers")
        assert out.splitlines()[1].startswith("acme")
        code, _, err = await cli("trace", "ab")
        assert (code, err.startswith("error: 400: trace_id")) == (1, True)
