"""CheckNestedFields: find a dotted field name inside JSON-valued span attributes.

Refinery serializes the whole span to JSON and asks gjson for the dotted path, so `http.headers.
User-Agent` finds `User-Agent` inside a nested `http.headers` object. Here nested values arrive as
JSON text in flattened attributes (as the README says), so the equivalent walk is: find an attribute
whose name is a dotted prefix of the field (shortest first, as gjson walks from the top), and follow
the rest of the path through its JSON, one dot-separated key (or array index) at a time. The field
name taken whole is a plain attribute lookup. Like gjson's `Result.String()`, whatever is found
comes back as text. Parsing JSON on every evaluation is costly, which is why Refinery documents the
option as expensive; it is off unless a rules sampler asks for it. gjson's path syntax beyond plain
keys and indexes (wildcards, `#` queries, escaped dots) is not interpreted."""

from __future__ import annotations

import json

from refinery_py.decide.goconv import go_fixed_string
from refinery_py.model import SpanView

_NOT_FOUND = object()


def _walk(document: object, path: tuple[str, ...]) -> object:
    for key in path:
        if isinstance(document, dict):
            document = document.get(key, _NOT_FOUND)
            if document is _NOT_FOUND:
                return _NOT_FOUND
        elif isinstance(document, list) and key.isascii() and key.isdigit():
            index = int(key)
            if index >= len(document):
                return _NOT_FOUND
            document = document[index]
        else:
            return _NOT_FOUND
    return document


def gjson_text(value: object) -> str:
    """What gjson's `Result.String()` gives for a value: numbers as plain decimals, null as ``."""
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return go_fixed_string(value)
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class NestedLookup:
    """The nested lookup of one field name, with its prefix splits worked out once."""

    __slots__ = ("_splits", "reads")

    def __init__(self, field: str) -> None:
        parts = field.split(".")
        self._splits = tuple(
            (".".join(parts[:cut]), tuple(parts[cut:])) for cut in range(1, len(parts) + 1)
        )
        self.reads = frozenset(key for key, _ in self._splits)
        """The attribute names this lookup may read."""

    def get(self, span: SpanView) -> str | None:
        """The nested value as text, or None when no prefix leads to it."""
        for key, path in self._splits:
            raw = span.get(key)
            if raw is None:
                continue
            if not path:
                return gjson_text(raw)
            if type(raw) is not str or not raw.lstrip().startswith(("{", "[")):
                continue
            try:
                document = json.loads(raw)
            except (ValueError, RecursionError):  # not JSON after all, or absurdly deep
                continue
            found = _walk(document, path)
            if found is not _NOT_FOUND:
                return gjson_text(found)
        return None
