"""bench.equal_load and bench.placement: CPU lists, pinning a real process tree, the summary,
and a short run of the tool against real servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import equal_load, placement
from bench.equal_load import Measurement, Server, summary

USABLE = tuple(sorted(os.sched_getaffinity(0)))


def test_cpu_lists_read_as_taskset_writes_them() -> None:
    first = USABLE[0]
    assert placement.parse_cpus(str(first)) == (first,)
    assert placement.parse_cpus(f"{first}-{first}") == (first,)
    if len(USABLE) > 1:
        a, b = USABLE[0], USABLE[1]
        assert placement.parse_cpus(f"{b},{a}") == (b, a)  # the order given: worker 0 on b
        assert placement.parse_cpus(f"{a}, {b},{a}") == (a, b)
    for bad in ("", "x", "1-", "-1", "3-1", "0;1"):
        with pytest.raises(ValueError, match="CPU list"):
            placement.parse_cpus(bad)
    with pytest.raises(ValueError, match="may use"):
        placement.parse_cpus(str(max(USABLE) + 1000))


def _threads_cpus(pid: int) -> list[set[int]]:
    return [set(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")]


@pytest.fixture
def tree() -> Iterator[int]:
    """A process with a second thread, a worker child with a second thread, and a helper
    child whose command line names multiprocessing's resource tracker."""
    code = (
        "import subprocess, sys, threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "sleeper = 'import threading, time; "
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start(); time.sleep(60)'\n"
        "subprocess.Popen([sys.executable, '-c', sleeper])\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', "
        "'resource_tracker'])\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    root = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert root.stdout is not None
        assert root.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 10
        # Both children up, each with its threads (the worker starts a second one).
        while len(placement.server_processes(root.pid)) < 1 or any(
            len(os.listdir(f"/proc/{pid}/task")) < 2 for pid in placement.server_processes(root.pid)
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield root.pid
    finally:
        for pid in placement.server_processes(root.pid):
            os.kill(pid, 9)
        subprocess.run(["pkill", "-9", "-P", str(root.pid)], check=False)
        root.kill()
        root.wait()
        if root.stdout is not None:
            root.stdout.close()


def test_a_server_is_placed_worker_by_worker_and_every_thread_follows(tree: int) -> None:
    cpus = USABLE[-2:] if len(USABLE) > 1 else USABLE
    workers = placement.server_processes(tree)
    assert len(workers) == 1  # the helper is not a worker
    placed = placement.place_server(tree, cpus)
    (worker,) = workers
    assert placed[worker] == (cpus[0],)
    assert placed[tree] == cpus
    assert _threads_cpus(worker) == [{cpus[0]}] * 2
    assert _threads_cpus(tree) == [set(cpus)] * 2
    helpers = [pid for pid in placed if pid not in (tree, worker)]
    assert len(helpers) == 1
    assert _threads_cpus(helpers[0]) == [set(cpus)]


def test_a_server_of_one_process_is_its_own_worker_zero() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        placed = placement.place_server(process.pid, USABLE)
        assert placed == {process.pid: (USABLE[0],)}
        assert _threads_cpus(process.pid) == [{USABLE[0]}]
    finally:
        process.kill()
        process.wait()


def test_server_configurations_are_named_as_in_the_benchmark_table() -> None:
    assert Server.parse("1") == Server(1) and Server.parse("1").label == "×1"
    assert Server.parse("2front") == Server(2, front=True)
    assert Server.parse(" 3front").label == "×3 front"
    for bad in ("0", "1front", "front", "2fronts", "two"):
        with pytest.raises(ValueError, match=r"2front|front needs"):
            Server.parse(bad)


def test_a_configuration_may_be_offered_a_rate_of_its_own() -> None:
    one_at_half = Server.parse("1@45000")
    assert one_at_half == Server(1, rate=45_000.0) and one_at_half.label == "×1 @45k"
    assert Server.parse("2front@90000").label == "×2 front @90k"
    for bad in ("1@", "1@0", "1@-5", "1@fast", "1@nan"):
        with pytest.raises(ValueError, match="the rate after @"):
            Server.parse(bad)


def _m(server: str, number: int, cpu: float, refused: int = 0) -> Measurement:
    return Measurement("default", server, number, cpu, 90_000, refused, 500)


def test_the_summary_gives_medians_their_ratio_and_the_per_round_ratio() -> None:
    measurements = [
        _m("×1", 1, 0.50),
        _m("×2 front", 1, 0.60),
        _m("×1", 2, 0.70),  # a slow round: both slower
        _m("×2 front", 2, 0.77),
        _m("×1", 3, 0.52),
        _m("×2 front", 3, 0.55, refused=3),
    ]
    lines = summary(measurements)
    text = "\n".join(lines)
    assert "0.550 (refused 3)" in text
    median = next(line for line in lines if line.startswith("median"))
    assert median.split() == ["median", "0.520", "0.600", "(+15%)"]
    # Per round: +20%, +10%, +6%: the median +10%.
    assert lines[-1] == "per-round ratio to ×1, median: ×2 front +10%"


def test_a_marked_cell_does_not_run_into_the_next_column() -> None:
    lines = summary([_m("×1 @45k", 1, 0.687), _m("×2", 1, 0.818, refused=11)])
    row = next(line for line in lines if line.startswith("1 "))
    assert row.split() == ["1", "0.687", "0.818", "(refused", "11)"]


def test_a_short_run_measures_every_server_at_the_rate_asked(tmp_path: Path) -> None:
    out = tmp_path / "equal.json"
    cpus = ",".join(map(str, USABLE))
    measurements = equal_load.main(
        [
            "--rate=4000",
            "--servers=1,2front",
            "--rounds=1",
            "--seconds=2",
            "--warm=1",
            "--senders=1",
            "--connections=2",
            "--traces=200",
            f"--server-cpus={cpus}",
            f"--json={out}",
            f"--logs={tmp_path}",
        ]
    )
    assert [m.server for m in measurements] == ["×1", "×2 front"]
    for m in measurements:
        assert m.held
        assert 0 < m.cpu_per_100k < 100
        assert 2_000 < m.spans_per_second < 8_000
    assert out.read_text().count('"cpu_per_100k"') == 2


def test_a_missing_rules_file_is_named_before_any_server_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        equal_load.parse_args(["--rate", "1", "--rules", "no/such/rules.yaml"])
    assert "no rules file at" in capsys.readouterr().err
