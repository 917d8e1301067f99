"""`rules test`: recorded traffic replayed through rules with the recorded clock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from refinery_py.config.rules import parse_rules
from refinery_py.decide.engine import RulesEngine
from refinery_py.decide.hashing import keep_for_rate
from refinery_py.otlp.json import request_to_json
from refinery_py.replay.report import render, summary_document
from refinery_py.replay.simulate import ReplaySettings, replay
from refinery_py.replay.sources import SourceError, read_requests
from tests.otlp_builders import request, span

SECOND = 1_000_000_000
T0 = 1_800_000_000 * SECOND

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
        - Name: drop health
          Drop: true
          Conditions:
            - Field: root.http.route
              Operator: "="
              Value: /health
        - Name: rest
          SampleRate: 4
  api:
    DeterministicSampler:
      SampleRate: 1
"""


def traffic(count: int = 200) -> list[bytes]:
    """`count` traces, one second apart: every 10th has an error, every 7th is a health check."""
    bodies = []
    for n in range(1, count + 1):
        start = T0 + n * SECOND
        route = "/health" if n % 7 == 0 else "/orders"
        child = span(n, 2, 1, error=n % 10 == 0, start=start, attrs={"customer.id": f"c{n % 3}"})
        root = span(n, 1, start=start, attrs={"http.route": route}, duration_ns=SECOND // 2)
        bodies.append(request(child, root, service="web").SerializeToString())
    return bodies


def run(bodies: list[bytes], rules: str = RULES, **settings: float) -> dict[str, object]:
    result = replay(bodies, RulesEngine(parse_rules(rules, "r.yaml")), ReplaySettings(**settings))
    return {t.trace_id: t for t in result.traces}


def test_every_trace_is_decided_once_as_the_rules_say() -> None:
    decided = run(traffic())
    assert len(decided) == 200
    for n in range(1, 201):
        trace = decided[n.to_bytes(16, "big").hex()]
        assert trace.span_count == 2
        assert trace.customer == f"c{n % 3}"
        if n % 10 == 0:
            assert (trace.keep, trace.reason) == (True, "rules/trace/keep errors")
        elif n % 7 == 0:
            assert (trace.keep, trace.sample_rate) == (False, 0)
        else:
            assert trace.sample_rate == 4
            assert trace.keep == keep_for_rate(trace.trace_id, 4)


def test_the_recorded_timestamps_are_the_clock() -> None:
    # Root and child of trace 1 arrive in separate requests 30 s apart (recorded time): with a
    # send_delay of 2 s the trace is decided before the child arrives, so the child is late.
    first = request(span(1, 1, start=T0), service="web").SerializeToString()
    later = request(span(1, 2, 1, start=T0 + 30 * SECOND), service="web").SerializeToString()
    result = replay(
        [first, later], RulesEngine(parse_rules(RULES, "r.yaml")), ReplaySettings(send_delay=2)
    )
    assert [t.span_count for t in result.traces] == [1]
    assert result.late_spans == 1
    assert result.rescued_spans == 0
    # With a long send_delay both spans belong to the decision.
    result = replay(
        [first, later], RulesEngine(parse_rules(RULES, "r.yaml")), ReplaySettings(send_delay=60)
    )
    assert [t.span_count for t in result.traces] == [2]
    assert result.duration == pytest.approx(30.005, abs=0.01)


def test_targets_come_from_the_service_name() -> None:
    body = request(span(9, 1, start=T0), service="api").SerializeToString()
    (trace,) = run([body]).values()
    assert trace.target == "api"
    assert trace.reason == "deterministic/always"


def test_sources_read_json_lines_and_protobuf(tmp_path: Path) -> None:
    bodies = traffic(5)
    lines = tmp_path / "traffic.jsonl"
    lines.write_bytes(b"\n".join(request_to_json(b) for b in bodies) + b"\n\n")
    binary = tmp_path / "one.binpb"
    binary.write_bytes(bodies[0])
    assert list(read_requests(lines)) == bodies
    assert list(read_requests(binary)) == [bodies[0]]


def test_bad_sources_name_the_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(request_to_json(traffic(1)[0]) + b"\n{oops\n")
    with pytest.raises(SourceError, match=r"broken.jsonl:2: request body is not valid JSON"):
        list(read_requests(broken))
    with pytest.raises(SourceError, match="unknown traffic format"):
        list(read_requests(tmp_path / "x.csv"))


def rules_test(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "refinery_py", "rules", "test", *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "traffic.jsonl"
    path.write_bytes(b"\n".join(request_to_json(b) for b in traffic()) + b"\n")
    return path


def test_cli_json_document(tmp_path: Path, recording: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    result = rules_test("--rules", str(rules), "--json", str(recording))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) >= {"traces", "rules", "customers"}
    assert len(document["traces"]) == 200
    first = document["traces"][0]
    assert set(first) >= {"trace_id", "target", "keep", "sample_rate", "reason"}
    by_rule = {r["rule"]: r for r in document["rules"]}
    assert by_rule["rules/trace/keep errors"]["kept"] == 20
    assert by_rule["rules/trace/drop health"]["kept"] == 0
    assert {c["customer"] for c in document["customers"]} == {"c0", "c1", "c2"}
    assert document["totals"]["spans"] == 400


def test_cli_table_and_compare(tmp_path: Path, recording: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    keep_all = tmp_path / "keep-all.yaml"
    keep_all.write_text(
        "RulesVersion: 2\nSamplers:\n  __default__:\n    DeterministicSampler:\n"
        "      SampleRate: 1\n"
    )
    table = rules_test("--rules", str(rules), str(recording))
    assert table.returncode == 0, table.stderr
    assert "rules/trace/keep errors" in table.stdout
    assert "200 traces (400 spans)" in table.stdout
    compared = rules_test(
        "--rules", str(rules), "--compare", str(keep_all), "--json", str(recording)
    )
    document = json.loads(compared.stdout)
    dropped_by_a = sum(1 for t in document["a"]["traces"] if not t["keep"])
    assert len(document["changed"]) == 200 - 20  # every trace but the errors changes rate or fate
    assert sum(1 for c in document["changed"] if c["b"]["keep"] and not c["a"]["keep"]) == (
        dropped_by_a
    )
    human = rules_test("--rules", str(rules), "--compare", str(keep_all), str(recording))
    assert "traces decided differently" in human.stdout


def test_a_late_error_rescues_its_dropped_trace_as_the_pipeline_does() -> None:
    """The health check is dropped at its deadline; its failed child comes 30 s later and meets
    `keep errors`, which comes first: the pipeline keeps it, and so does the replay's count."""
    root = span(1, 1, attrs={"http.route": "/health"}, start=T0)
    first = request(root, service="web").SerializeToString()
    failed = span(1, 2, 1, error=True, start=T0 + 30 * SECOND)
    later = request(failed, service="web").SerializeToString()
    after = request(span(1, 3, 1, start=T0 + 31 * SECOND), service="web").SerializeToString()
    result = replay(
        [first, later, after],
        RulesEngine(parse_rules(RULES, "r.yaml")),
        ReplaySettings(send_delay=2),
    )
    (trace,) = result.traces
    assert (trace.keep, trace.reason) == (False, "rules/trace/drop health")
    assert (result.late_spans, result.rescued_spans) == (2, 1)
    text = render(summary_document(result))
    assert "2 late spans arrived after their trace was decided (1 of dropped traces kept" in text


def test_cli_reports_unreadable_input(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    result = rules_test("--rules", str(rules), str(tmp_path / "missing.jsonl"))
    assert result.returncode == 1
    assert "missing.jsonl" in result.stderr
