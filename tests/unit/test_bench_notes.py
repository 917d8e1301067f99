"""The benchmark's notes on its own figures: which servers ran on a slowed machine."""

from __future__ import annotations

from bench.ramp import Result
from bench.run import slow_machine_notes


def _result(label: str, floor: float) -> Result:
    result = Result(label=label, name=label, rules="rules.yaml")
    result.floor = floor
    return result


def test_a_server_whose_floor_fell_is_named() -> None:
    # Floors of a real run (6 December 2026): the machine slowed before the second server.
    floors = {"a": 296_058, "b": 230_641, "c": 295_715, "d": 291_960, "e": 296_542}

    notes = slow_machine_notes([_result(label, floor) for label, floor in floors.items()])

    assert len(notes) == 1
    assert notes[0].startswith("b (rules.yaml): the protobuf floor measured just before it was")
    assert "22% below the run's median (295,715)" in notes[0]


def test_floors_within_a_tenth_of_each_other_say_nothing() -> None:
    results = [_result("a", 296_000), _result("b", 270_000), _result("c", 300_000)]

    assert slow_machine_notes(results) == []
    assert slow_machine_notes([_result("only", 100_000)]) == []
