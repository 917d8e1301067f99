"""One YAML mapping as read for one dataclass: its entries, values and what went wrong.

Cross-field checks (`Field` xor `Fields`, a cache TTL against the trace timeout) look at a whole
mapping at once; `MappingView` gives them each key's value, whether it was written, and its line.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from refinery_py.config.schema_fields import field_infos
from refinery_py.config.yaml_tree import line_of


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass(frozen=True, slots=True)
class Entry:
    """One `key: value` pair of a mapping, with both nodes for their lines."""

    key: str
    key_node: yaml.Node
    value_node: yaml.Node

    @property
    def line(self) -> int:
        return line_of(self.key_node)

    @property
    def value_line(self) -> int:
        return line_of(self.value_node)


class MappingView:
    """What one YAML mapping said for one dataclass: the cross-field checks read and adjust it."""

    def __init__(self, cls: type, path: str, line: int) -> None:
        self.cls = cls
        self.path = path
        self.line_no = line
        self.entries: dict[str, Entry] = {}
        self.values: dict[str, object] = {}
        self.failed: set[str] = set()
        self._infos = {info.attr: info for info in field_infos(cls)}

    def given(self, attr: str) -> bool:
        """The key (or an alias) is written in the file, even if its value is null."""
        return attr in self.entries

    def ok(self, attr: str) -> bool:
        """The value was read without problems (or the key is absent)."""
        return attr not in self.failed

    def get(self, attr: str) -> object:
        """The value read, else the field's default."""
        if attr in self.values:
            return self.values[attr]
        return self._infos[attr].default()

    def set(self, attr: str, value: object) -> None:
        self.values[attr] = value

    def fail(self, attr: str) -> None:
        self.failed.add(attr)

    def key(self, attr: str) -> str:
        """The key as written (it may be an alias), else the declared key."""
        entry = self.entries.get(attr)
        return entry.key if entry is not None else self._infos[attr].key

    def line(self, attr: str) -> int:
        entry = self.entries.get(attr)
        return entry.line if entry is not None else self.line_no

    def value_line(self, attr: str) -> int:
        entry = self.entries.get(attr)
        return entry.value_line if entry is not None else self.line_no

    def path_of(self, attr: str) -> str:
        return join_path(self.path, self.key(attr))
