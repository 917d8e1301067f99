"""Field metadata shared by every config and rules dataclass: the YAML key, its docs, its limits.

The loader validates against this metadata and the reference docs are generated from it, so a key
is described exactly once: `option()` declares it, `field_infos()` reads it back.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MISSING: Any = dataclasses.MISSING


def option(
    key: str,
    doc: str,
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    required: bool = False,
    minimum: float | None = None,
    exclusive_minimum: float | None = None,
    maximum: float | None = None,
    choices: Sequence[str] | None = None,
    aliases: Sequence[str] = (),
    shown_type: str | None = None,
) -> Any:
    """Declare one YAML key of a settings dataclass.

    `key` is the name in the file; `doc` is the one-paragraph reference text; `required` keys have
    no default and are reported when absent; `minimum`/`maximum`/`exclusive_minimum` bound numbers;
    `choices` restricts strings; `aliases` are other accepted spellings (Refinery's v1 names, say);
    `shown_type` replaces the type name the reference docs derive from the annotation.
    """
    metadata = {
        "key": key,
        "doc": doc,
        "required": required,
        "minimum": minimum,
        "exclusive_minimum": exclusive_minimum,
        "maximum": maximum,
        "choices": tuple(choices) if choices is not None else None,
        "aliases": tuple(aliases),
        "shown_type": shown_type,
    }
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One YAML key of a dataclass, as declared with `option()`."""

    owner: type
    attr: str
    key: str
    aliases: tuple[str, ...]
    shown_type: str | None
    tp: Any
    doc: str
    required: bool
    minimum: float | None
    exclusive_minimum: float | None
    maximum: float | None
    choices: tuple[str, ...] | None
    field: dataclasses.Field[Any]

    def default(self) -> object:
        if self.field.default_factory is not dataclasses.MISSING:
            return self.field.default_factory()
        return self.field.default


@functools.cache
def field_infos(cls: type) -> tuple[FieldInfo, ...]:
    """The YAML keys of a settings dataclass (fields without `option()` metadata are internal)."""
    hints = typing.get_type_hints(cls)
    infos = []
    for fld in dataclasses.fields(cls):
        meta = fld.metadata
        if "key" not in meta:
            continue
        infos.append(
            FieldInfo(
                owner=cls,
                attr=fld.name,
                key=meta["key"],
                aliases=tuple(meta["aliases"]),
                shown_type=meta.get("shown_type"),
                tp=hints[fld.name],
                doc=meta["doc"],
                required=bool(meta["required"]),
                minimum=meta["minimum"],
                exclusive_minimum=meta["exclusive_minimum"],
                maximum=meta["maximum"],
                choices=meta["choices"],
                field=fld,
            )
        )
    return tuple(infos)
