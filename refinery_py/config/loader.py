"""YAML nodes → frozen settings dataclasses, driven by type annotations and `option()` metadata.

`Reader` walks a node tree against a dataclass: each field's annotation says how to convert its
value (int, float, bool, str, Seconds, ByteSize, `X | None`, tuples, dicts, nested dataclasses,
`object` for raw values) and its `option()` metadata gives the YAML key, aliases, limits and
choices. Every problem is recorded with its line and loading carries on, so one pass reports all.

Specialised files plug in through three seams: `hooks` read one field themselves (a field whose
type is a union of dataclasses, say), `checks` look across a mapping's fields once they are read,
and `parsers` turn text into a validated NewType (addresses, for instance).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import yaml

from refinery_py.config.mapping_view import Entry, MappingView, join_path
from refinery_py.config.problems import Problem, Severity, closest, suggestion
from refinery_py.config.schema_fields import FieldInfo, field_infos
from refinery_py.config.units import (
    ByteSize,
    Seconds,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)
from refinery_py.config.yaml_tree import (
    bool_value,
    describe,
    is_null,
    line_of,
    mapping_pairs,
    scalar_value,
)

T = TypeVar("T")


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


INVALID: Final = _Marker("INVALID")
"""Returned for a value that could not be read; the reason is already recorded as a Problem."""

_NOT_GIVEN: Final = _Marker("NOT_GIVEN")

FieldHook = Callable[["Reader", Entry, str], object]
"""Reads one field's value itself: `(reader, entry, path) -> value or INVALID`."""

Check = Callable[["Reader", MappingView], None]
"""Cross-field validation of one mapping, run after its fields are read."""

TextParser = Callable[[str], object]
"""Turns a scalar's text into a validated value; raises ValueError with a readable message."""


class Reader:
    """Converts YAML nodes into dataclasses for one file, collecting problems as it goes."""

    def __init__(
        self,
        source: str,
        *,
        hooks: Mapping[tuple[type, str], FieldHook] | None = None,
        checks: Mapping[type, Check] | None = None,
        parsers: Mapping[object, TextParser] | None = None,
    ) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self._hooks = dict(hooks or {})
        self._checks = dict(checks or {})
        self._parsers = dict(parsers or {})

    def error(self, line: int, message: str) -> None:
        self.report(line, message, "error")

    def warning(self, line: int, message: str) -> None:
        self.report(line, message, "warning")

    def report(self, line: int, message: str, severity: Severity) -> None:
        self.problems.append(Problem(self.source, line, message, severity))

    def read_document(self, root: yaml.Node | None, cls: type[T]) -> T | _Marker:
        """Read a whole file into `cls`; an empty file means every default."""
        if root is not None and not isinstance(root, yaml.MappingNode) and not is_null(root):
            self.error(
                line_of(root),
                f"the file must be a mapping of keys to values, found {describe(root)}",
            )
            return INVALID
        return self.read_dataclass(root, cls, "", 1)

    def read_dataclass(
        self, node: yaml.Node | None, cls: type[T], path: str, anchor: int
    ) -> T | _Marker:
        """Read a mapping into `cls`. `anchor` is the line to blame for missing keys."""
        if node is not None and not is_null(node) and not isinstance(node, yaml.MappingNode):
            self.error(
                line_of(node), f"{path or 'the file'} must be a mapping, found {describe(node)}"
            )
            return INVALID
        line = line_of(node) if isinstance(node, yaml.MappingNode) else anchor
        owner: type = cls
        view = MappingView(owner, path, line)
        infos = field_infos(owner)
        by_key = {name: info for info in infos for name in (info.key, *info.aliases)}
        entries = self.entries(node, path) if isinstance(node, yaml.MappingNode) else []
        misspelled: set[str] = set()
        for entry in entries:
            info = by_key.get(entry.key)
            if info is None:
                misspelled.add(self._unknown_key(entry, path, infos))
                continue
            earlier = view.entries.get(info.attr)
            if earlier is not None:
                both = f"both {earlier.key} (line {earlier.line}) and {entry.key} are given"
                self.error(entry.line, f"{both}; use only one")
                view.fail(info.attr)
                continue
            view.entries[info.attr] = entry
            value = self._read_field(info, entry, join_path(path, entry.key))
            if value is INVALID:
                view.fail(info.attr)
            elif value is not _NOT_GIVEN:
                view.set(info.attr, value)
        for info in infos:
            if info.required and info.attr not in view.values and info.attr not in view.failed:
                view.fail(info.attr)
                if info.key in misspelled:
                    continue  # the unknown-key message already says which key was meant
                where = f"in {path}" if path else "at the top level"
                line = view.line(info.attr) if view.given(info.attr) else anchor
                self.error(line, f"missing required key {info.key} {where}")
        check = self._checks.get(cls)
        if check is not None:
            check(self, view)
        if view.failed:
            return INVALID
        kwargs = dict(view.values)
        if "line" in {fld.name for fld in dataclasses.fields(cls)}:  # type: ignore[arg-type]
            kwargs["line"] = line
        return cls(**kwargs)

    def entries(self, node: yaml.MappingNode, path: str) -> list[Entry]:
        """A mapping's entries in file order; repeated and non-text keys are reported."""
        seen: dict[str, Entry] = {}
        result = []
        for key_node, value_node in mapping_pairs(node):
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(
                    line_of(key_node),
                    f"keys in {path or 'the file'} must be plain text, found {describe(key_node)}",
                )
                continue
            entry = Entry(str(key_node.value), key_node, value_node)
            first = seen.get(entry.key)
            if first is not None:
                self.error(
                    entry.line,
                    f"{join_path(path, entry.key)} is given twice (first at line {first.line})",
                )
                continue
            seen[entry.key] = entry
            result.append(entry)
        return result

    def read_value(self, node: yaml.Node, tp: Any, path: str, anchor: int | None = None) -> object:
        """Convert one node to `tp`; INVALID (with a problem recorded) when it cannot be.

        `anchor` is the line of the key holding the value, blamed for keys missing inside it.
        """
        if tp is object:
            return self._raw(node, path)
        if _is_union(tp):
            options = [arg for arg in typing.get_args(tp) if arg is not type(None)]
            if len(options) != 1:
                raise TypeError(f"{path}: a union of {options} needs a field hook to be read")
            return None if is_null(node) else self.read_value(node, options[0], path, anchor)
        if is_null(node):
            return _NOT_GIVEN
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.read_dataclass(node, tp, path, anchor or line_of(node))
        origin = typing.get_origin(tp)
        if origin is tuple:
            return self._read_tuple(node, typing.get_args(tp)[0], path)
        if origin is dict:
            return self._read_dict(node, typing.get_args(tp)[1], path)
        if not isinstance(node, yaml.ScalarNode):
            return self._wrong(node, path, _EXPECTED.get(tp, "a single value"))
        return self._read_scalar(node, tp, path)

    def _read_field(self, info: FieldInfo, entry: Entry, path: str) -> object:
        hook = self._hooks.get((info.owner, info.attr))
        value = (
            hook(self, entry, path)
            if hook is not None
            else self.read_value(entry.value_node, info.tp, path, entry.line)
        )
        if value is INVALID or value is _NOT_GIVEN or value is None:
            return value
        if not self._within_limits(info, value, entry, path):
            return INVALID
        return value

    def _within_limits(self, info: FieldInfo, value: object, entry: Entry, path: str) -> bool:
        line = entry.value_line
        if info.choices is not None and isinstance(value, str) and value not in info.choices:
            listed = ", ".join(info.choices)
            hint = suggestion(value, info.choices)
            self.error(line, f"{path} must be one of {listed}; found {value!r}{hint}")
            return False
        if not isinstance(value, int | float) or isinstance(value, bool):
            return True
        shown = _format_number(info.tp, value)
        if info.minimum is not None and value < info.minimum:
            self.error(
                line,
                f"{path} must be at least {_format_number(info.tp, info.minimum)}, found {shown}",
            )
            return False
        if info.exclusive_minimum is not None and value <= info.exclusive_minimum:
            limit = _format_number(info.tp, info.exclusive_minimum)
            self.error(line, f"{path} must be greater than {limit}, found {shown}")
            return False
        if info.maximum is not None and value > info.maximum:
            self.error(
                line,
                f"{path} must be at most {_format_number(info.tp, info.maximum)}, found {shown}",
            )
            return False
        return True

    def _read_scalar(self, node: yaml.ScalarNode, tp: Any, path: str) -> object:
        parser = self._parsers.get(tp)
        if parser is not None:
            return self._parse_text(node, parser, path)
        if tp is Seconds:
            return self._read_duration(node, path)
        if tp is ByteSize:
            return self._read_size(node, path)
        if tp is bool:
            flag = bool_value(node)
            return self._wrong(node, path, "true or false") if flag is None else flag
        value = scalar_value(node)
        if tp is str:
            # Any scalar reads as its text, as in Refinery (`Name: 404` is the name "404").
            return str(node.value)
        if tp is int:
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return self._wrong(node, path, "an integer")
        if tp is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return self._wrong(node, path, "a number")
        raise TypeError(f"{path}: no reader for type {tp!r}")

    def _read_duration(self, node: yaml.ScalarNode, path: str) -> object:
        value = scalar_value(node)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value < 0 or math.isnan(value):
                return self._wrong(node, path, "a duration of 0 or more")
            return Seconds(float(value))
        if not isinstance(value, str):
            return self._wrong(node, path, "a duration like 500ms, 2s or 1m")
        return self._parse_text(node, parse_duration, path)

    def _read_size(self, node: yaml.ScalarNode, path: str) -> object:
        value = scalar_value(node)
        if isinstance(value, int) and not isinstance(value, bool):
            return ByteSize(value) if value >= 0 else self._wrong(node, path, "a size of 0 or more")
        if not isinstance(value, str):
            return self._wrong(node, path, "a size like 512MiB, 2GiB or a byte count")
        return self._parse_text(node, parse_size, path)

    def _parse_text(self, node: yaml.ScalarNode, parser: TextParser, path: str) -> object:
        try:
            return parser(str(node.value))
        except ValueError as exc:
            self.error(line_of(node), f"{path}: {exc}")
            return INVALID

    def _read_tuple(self, node: yaml.Node, item_tp: Any, path: str) -> object:
        if not isinstance(node, yaml.SequenceNode):
            return self._wrong(node, path, "a list" + _list_of(item_tp))
        items: list[object] = []
        for index, item in enumerate(node.value):
            item_path = f"{path}[{index}]"
            if is_null(item) and item_tp is not object:
                items.append(self._wrong(item, item_path, _EXPECTED.get(item_tp, "a value")))
                continue
            items.append(self.read_value(item, item_tp, item_path))
        return INVALID if any(item is INVALID for item in items) else tuple(items)

    def _read_dict(self, node: yaml.Node, value_tp: Any, path: str) -> object:
        if not isinstance(node, yaml.MappingNode):
            return self._wrong(node, path, "a mapping")
        result: dict[str, object] = {}
        broken = False
        for entry in self.entries(node, path):
            entry_path = join_path(path, entry.key)
            if is_null(entry.value_node) and value_tp is not object:
                value: object = self._wrong(
                    entry.value_node, entry_path, _EXPECTED.get(value_tp, "a value")
                )
            else:
                value = self.read_value(entry.value_node, value_tp, entry_path)
            broken = broken or value is INVALID
            result[entry.key] = value
        return INVALID if broken else result

    def _raw(self, node: yaml.Node, path: str) -> object:
        """A scalar or a (nested) list of scalars, lists as tuples so specs stay hashable."""
        if isinstance(node, yaml.ScalarNode):
            return scalar_value(node)
        if isinstance(node, yaml.SequenceNode):
            items = [self._raw(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
            return INVALID if any(item is INVALID for item in items) else tuple(items)
        return self._wrong(node, path, "a single value or a list")

    def _wrong(self, node: yaml.Node, path: str, expected: str) -> _Marker:
        self.error(line_of(node), f"{path} must be {expected}, found {describe(node)}")
        return INVALID

    def _unknown_key(self, entry: Entry, path: str, infos: tuple[FieldInfo, ...]) -> str:
        """Report a key the dataclass does not have; returns the key probably meant, or ""."""
        names = [name for info in infos for name in (info.key, *info.aliases)]
        # A spelling that differs only in case or separators wins over a near miss, here first,
        # then one level down (`trace_timeout` at the top level → traces.trace_timeout).
        meant = closest(entry.key, names, fuzzy=False)
        nested = None if meant else _nested_key(entry.key, infos, fuzzy=False)
        if meant is None and nested is None:
            meant = closest(entry.key, names)
            nested = None if meant else _nested_key(entry.key, infos, fuzzy=True)
        hint = f"; did you mean {meant or nested}?" if meant or nested else ""
        where = f"in {path}" if path else "at the top level"
        self.error(entry.line, f"unknown key {entry.key} {where}{hint}")
        return meant or ""


_EXPECTED: dict[object, str] = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    Seconds: "a duration like 500ms, 2s or 1m",
    ByteSize: "a size like 512MiB, 2GiB or a byte count",
}


def _list_of(item_tp: Any) -> str:
    expected = _EXPECTED.get(item_tp)
    if expected is None:
        return ""
    plural = {"an integer": "integers", "a string": "strings", "a number": "numbers"}
    return " of " + plural.get(expected, "values")


def _is_union(tp: Any) -> bool:
    return isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union


def _nested_key(key: str, infos: tuple[FieldInfo, ...], *, fuzzy: bool) -> str | None:
    """`section.key` for a section one level down that has this key, if any."""
    for info in infos:
        section = _section_type(info.tp)
        if section is None:
            continue
        meant = closest(key, [nested.key for nested in field_infos(section)], fuzzy=fuzzy)
        if meant is not None:
            return f"{info.key}.{meant}"
    return None


def _section_type(tp: Any) -> type | None:
    """The dataclass a field holds directly (`X` or `X | None`), not inside a list or union."""
    if _is_union(tp):
        options = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        tp = options[0] if len(options) == 1 else None
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _format_number(tp: Any, value: float) -> str:
    if tp is Seconds:
        return format_duration(value)
    if tp is ByteSize:
        return format_size(int(value))
    return f"{value:g}"
