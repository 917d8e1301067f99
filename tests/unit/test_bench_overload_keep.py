"""bench.overload_keep: each refusal_wait reaches its server, and every run is measured."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench import overload_keep


def test_late_spans_are_read_by_decision_over_every_worker() -> None:
    text = "\n".join(
        [
            "# TYPE refinery_late_spans_total counter",
            'refinery_late_spans_total{decision="kept",worker="0"} 3.0',
            'refinery_late_spans_total{decision="kept",worker="1"} 4.0',
            'refinery_late_spans_total{decision="dropped",worker="0"} 0.0',
            'refinery_late_spans_total{decision="rescued",worker="1"} 2.0',
        ]
    )
    assert overload_keep.late_spans(text) == {"kept": 7.0, "rescued": 2.0}
    assert overload_keep.late_spans(None) == {}


def test_a_short_run_measures_each_wait_on_its_own_server(tmp_path: Path) -> None:
    runs = overload_keep.main(
        [
            "--rate=4000",
            "--waits=0s,3s",
            "--rounds=1",
            "--seconds=2",
            "--warm=1",
            "--settle=2",
            "--connections=2",
            "--traces=200",
            f"--logs={tmp_path}",
        ]
    )
    assert [r.wait for r in runs] == ["0s", "3s"]
    for run in runs:
        assert 2_000 < run.accepted_per_second < 8_000
        assert run.must_keep > 0
        assert run.must_keep_missing == 0, "nothing refused at this rate, nothing lost"
        assert run.buffer_peak_bytes > 0
    (config,) = tmp_path.glob("refinery-*.yaml")  # the last server's
    assert yaml.safe_load(config.read_text())["traces"]["refusal_wait"] == "3s"
