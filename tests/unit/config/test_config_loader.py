"""The generic loader: annotations and option() metadata drive conversion and validation."""

# option() returns a dataclasses.field(), which ruff cannot see through: RUF009 is a false alarm.

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from refinery_py.config.loader import INVALID, Reader
from refinery_py.config.mapping_view import MappingView
from refinery_py.config.problems import ConfigError, Problem
from refinery_py.config.schema_fields import field_infos, option
from refinery_py.config.units import ByteSize, Seconds
from refinery_py.config.yaml_tree import compose


@dataclass(frozen=True, slots=True, kw_only=True)
class Inner:
    name: str = option("Name", "A name.", default="")
    weight: float = option("Weight", "A weight.", default=0.5, exclusive_minimum=0, maximum=1)
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    count: int = option("Count", "A count.", default=1, minimum=1)
    ratio: float = option("Ratio", "A ratio.", default=1.0)
    enabled: bool = option("Enabled", "A switch.", default=False)
    label: str | None = option("Label", "A label.", default=None)
    mode: str = option("Mode", "A mode.", default="fast", choices=("fast", "slow"))
    delay: Seconds = option("Delay", "A delay.", default=Seconds(2.0), minimum=0)
    size: ByteSize = option("Size", "A size.", default=ByteSize(1024))
    names: tuple[str, ...] = option("Names", "Names.", default=(), aliases=("NameList",))
    inners: tuple[Inner, ...] = option("Inners", "Inner things.", default=())
    labels: dict[str, str] = option("Labels", "Labels.", default_factory=dict)
    weights: dict[str, float] = option("Weights", "Weights.", default_factory=dict)
    raw: object = option("Raw", "Anything scalar.", default=None)
    inner: Inner = option("Inner", "One inner thing.", default_factory=Inner)
    maybe_inner: Inner | None = option("MaybeInner", "Perhaps an inner thing.", default=None)
    required: int = option("Required", "Must be given.", default=0, required=True)
    line: int = 0


def load(text: str, cls: type = Sample, **reader_args: object) -> tuple[object, list[Problem]]:
    root, problems = compose(textwrap.dedent(text), "s.yaml")
    assert not problems, problems
    reader = Reader("s.yaml", **reader_args)  # type: ignore[arg-type]
    result = reader.read_document(root, cls)
    return result, reader.problems


def errors(text: str, cls: type = Sample) -> list[tuple[int, str]]:
    _, problems = load(text, cls)
    return [(problem.line, problem.message) for problem in problems]


def test_every_supported_type_is_converted() -> None:
    result, problems = load(
        """\
        Count: 3
        Ratio: 2
        Enabled: yes
        Label: 404
        Mode: slow
        Delay: 1m30s
        Size: 16MiB
        NameList: [a, b]
        Inners:
          - Name: first
          - Name: second
            Weight: 1
        Labels: {team: core, code: 7}
        Weights: {a: 1, b: 0.25}
        Raw: [1, [two, 3.5], true]
        Inner:
          Name: solo
        MaybeInner:
          Name: maybe
        Required: 0
        """
    )
    assert problems == []
    assert result == Sample(
        count=3,
        ratio=2.0,
        enabled=True,
        label="404",
        mode="slow",
        delay=Seconds(90.0),
        size=ByteSize(16 * 1024**2),
        names=("a", "b"),
        inners=(Inner(name="first", line=10), Inner(name="second", weight=1.0, line=11)),
        labels={"team": "core", "code": "7"},
        weights={"a": 1.0, "b": 0.25},
        raw=(1, ("two", 3.5), True),
        inner=Inner(name="solo", line=17),
        maybe_inner=Inner(name="maybe", line=19),
        required=0,
        line=1,
    )
    assert isinstance(result, Sample)
    assert hash(result.raw)  # raw lists come back as tuples, so specs stay hashable


def test_absent_keys_and_null_values_take_the_defaults() -> None:
    result, problems = load("Required: 5\nCount:\nLabel:\nInner:\n")
    assert problems == []
    assert result == Sample(required=5, label=None, line=1)


def test_missing_required_key_is_reported_at_the_enclosing_key() -> None:
    assert errors("Count: 2\n") == [(1, "missing required key Required at the top level")]


def test_unknown_key_suggests_across_case_and_separators() -> None:
    assert errors("Required: 1\ncount: 2\n") == [
        (2, "unknown key count at the top level; did you mean Count?")
    ]
    assert errors("Required: 1\nmaybe-inner: {}\n") == [
        (2, "unknown key maybe-inner at the top level; did you mean MaybeInner?")
    ]


def test_unknown_key_suggests_near_misses() -> None:
    assert errors("Required: 1\nEnabeld: true\n") == [
        (2, "unknown key Enabeld at the top level; did you mean Enabled?")
    ]


def test_unknown_key_without_any_close_name_has_no_suggestion() -> None:
    assert errors("Required: 1\nzzz: 1\n") == [(2, "unknown key zzz at the top level")]


def test_unknown_key_points_into_the_section_that_has_it() -> None:
    assert errors("Required: 1\nweight: 0.2\n") == [
        (2, "unknown key weight at the top level; did you mean Inner.Weight?")
    ]


def test_misspelled_required_key_is_reported_once() -> None:
    assert errors("required: 1\n") == [
        (1, "unknown key required at the top level; did you mean Required?")
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Count: many", "Count must be an integer, found the string 'many'"),
        ("Count: 1.5", "Count must be an integer, found the number 1.5"),
        ("Count: true", "Count must be an integer, found true"),
        ("Ratio: fast", "Ratio must be a number, found the string 'fast'"),
        ("Enabled: maybe", "Enabled must be true or false, found the string 'maybe'"),
        ("Label: [a]", "Label must be a string, found a list"),
        ("Names: a", "Names must be a list of strings, found the string 'a'"),
        ("Names: [a, [b]]", "Names[1] must be a string, found a list"),
        ("Inner: 3", "Inner must be a mapping, found the integer 3"),
        ("Labels: [a]", "Labels must be a mapping, found a list"),
        ("Labels: {a: [1]}", "Labels.a must be a string, found a list"),
        ("Raw: {a: 1}", "Raw must be a single value or a list, found a mapping"),
        ("Delay: soon", "Delay: 'soon' is not a duration; write it like 500ms, 2s, 1m30s or 1h"),
        ("Delay: true", "Delay must be a duration like 500ms, 2s or 1m, found true"),
        ("Delay: -1", "Delay must be a duration of 0 or more, found the integer -1"),
        (
            "Size: big",
            "Size: 'big' is not a size; write it like 512MiB, 2GiB, 64KB or a byte count",
        ),
        (
            "Size: 1.5",
            "Size must be a size like 512MiB, 2GiB or a byte count, found the number 1.5",
        ),
    ],
)
def test_wrong_types_say_what_was_expected_and_found(line: str, expected: str) -> None:
    assert errors(f"Required: 1\n{line}\n") == [(2, expected)]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Count: 0", "Count must be at least 1, found 0"),
        ("Inner: {Weight: 0}", "Inner.Weight must be greater than 0, found 0"),
        ("Inner: {Weight: 1.5}", "Inner.Weight must be at most 1, found 1.5"),
        ("Mode: fsat", "Mode must be one of fast, slow; found 'fsat'; did you mean fast?"),
        ("Mode: medium", "Mode must be one of fast, slow; found 'medium'"),
    ],
)
def test_limits_and_choices(line: str, expected: str) -> None:
    assert errors(f"Required: 1\n{line}\n") == [(2, expected)]


def test_value_errors_point_at_the_value_line() -> None:
    assert errors("Required: 1\nNames:\n  - a\n  -\n  - c\n") == [
        (4, "Names[1] must be a string, found nothing (null)")
    ]


def test_key_given_twice() -> None:
    assert errors("Required: 1\nCount: 2\nCount: 3\n") == [
        (3, "Count is given twice (first at line 2)")
    ]


def test_key_and_alias_together() -> None:
    assert errors("Required: 1\nNames: [a]\nNameList: [b]\n") == [
        (3, "both Names (line 2) and NameList are given; use only one")
    ]


def test_non_text_keys() -> None:
    assert errors("Required: 1\n? [a, b]\n: 1\n") == [
        (2, "keys in the file must be plain text, found a list")
    ]


def test_file_that_is_not_a_mapping() -> None:
    assert errors("- a\n- b\n") == [
        (1, "the file must be a mapping of keys to values, found a list")
    ]


def test_empty_document_means_defaults_and_reports_required_keys() -> None:
    result, problems = load("")
    assert result is INVALID
    assert [(problem.line, problem.message) for problem in problems] == [
        (1, "missing required key Required at the top level")
    ]


def test_every_problem_is_reported_not_just_the_first() -> None:
    found = errors(
        """\
        Count: zero
        Mode: medium
        Inners:
          - Name: ok
          - Weight: 9
        Labels: nope
        Unknown: 1
        """
    )
    assert [line for line, _ in found] == [1, 2, 5, 6, 7, 1]


def test_merge_keys_are_expanded() -> None:
    result, problems = load(
        """\
        Required: 1
        Inners:
          - &base {Name: shared, Weight: 0.25}
          - <<: *base
            Name: own
        """
    )
    assert problems == []
    assert isinstance(result, Sample)
    assert [(inner.name, inner.weight) for inner in result.inners] == [
        ("shared", 0.25),
        ("own", 0.25),
    ]


def test_hooks_read_a_field_and_checks_see_the_whole_mapping() -> None:
    seen: list[tuple[str, int]] = []

    def shout(reader: Reader, entry: object, path: str) -> object:
        value = reader.read_value(entry.value_node, str, path)  # type: ignore[attr-defined]
        return value.upper() if isinstance(value, str) else INVALID

    def check(reader: Reader, view: MappingView) -> None:
        seen.append((str(view.get("name")), view.line("name")))
        if view.get("name") == "BAD":
            reader.warning(view.line("name"), "that name is bad")

    result, problems = load(
        "Name: bad\nWeight: 0.75\n",
        Inner,
        hooks={(Inner, "name"): shout},
        checks={Inner: check},
    )
    assert result == Inner(name="BAD", weight=0.75, line=1)
    assert seen == [("BAD", 1)]
    assert [str(problem) for problem in problems] == ["s.yaml:1: warning: that name is bad"]


def test_parsers_turn_text_into_new_types() -> None:
    def parse_upper(text: str) -> str:
        if not text.isalpha():
            raise ValueError(f"{text!r} is not a word")
        return text.upper()

    result, problems = load("Name: word\n", Inner, parsers={str: parse_upper})
    assert problems == []
    assert result == Inner(name="WORD", line=1)
    _, problems = load("Name: 12\n", Inner, parsers={str: parse_upper})
    assert [(problem.line, problem.message) for problem in problems] == [
        (1, "Name: '12' is not a word")
    ]


def test_field_infos_expose_the_metadata_for_docs() -> None:
    infos = {info.key: info for info in field_infos(Sample)}
    assert infos["Count"].minimum == 1
    assert infos["Count"].doc == "A count."
    assert infos["Names"].aliases == ("NameList",)
    assert infos["Required"].required
    assert infos["Labels"].default() == {}
    assert "line" not in {info.attr for info in field_infos(Sample)}


def test_problem_and_config_error_formatting() -> None:
    error = Problem("a.yaml", 3, "bad value")
    warning = Problem("a.yaml", 4, "odd value", "warning")
    whole_file = Problem("a.yaml", 0, "cannot read")
    assert str(error) == "a.yaml:3: bad value"
    assert str(warning) == "a.yaml:4: warning: odd value"
    assert str(whole_file) == "a.yaml: cannot read"
    exc = ConfigError([error, warning])
    assert exc.problems == [error, warning]
    assert str(exc) == "a.yaml:3: bad value\na.yaml:4: warning: odd value"
