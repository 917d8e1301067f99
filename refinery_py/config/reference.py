"""Reference docs generated from the same `option()` declarations the loader validates against.

`python -m refinery_py.config.reference DIR` writes `DIR/config.md` (and, with the rules schema,
`DIR/rules.md`); a test fails when the committed files differ from what this produces, so the
docs cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from pathlib import Path

from refinery_py.config.addresses import EndpointText, HostPort
from refinery_py.config.schema_fields import FieldInfo, field_infos
from refinery_py.config.settings import Settings
from refinery_py.config.units import ByteSize, Seconds, format_duration, format_size

_TYPE_NAMES: dict[object, str] = {
    Seconds: "duration",
    ByteSize: "size",
    HostPort: "host:port",
    EndpointText: "host:port or URL",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    object: "any",
}


def type_name(tp: object) -> str:
    """A reader's name for an annotated type (`duration`, `list of string`, `string or null`)."""
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is tuple:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"map of {type_name(args[0])} to {type_name(args[1])}"
    if dataclasses.is_dataclass(tp):
        return "section"
    return getattr(tp, "__name__", str(tp))


def default_text(info: FieldInfo) -> str:
    """The default as it would be written in the file."""
    if info.required:
        return "required"
    value = info.default()
    if dataclasses.is_dataclass(value):
        return ""
    if value is None:
        return "null"
    if info.tp is Seconds or Seconds in typing.get_args(info.tp):
        return format_duration(float(typing.cast(float, value)))
    if info.tp is ByteSize:
        return format_size(int(typing.cast(int, value)))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value)


def limits_text(info: FieldInfo) -> str:
    parts = []
    if info.choices:
        parts.append("one of " + ", ".join(f"`{choice}`" for choice in info.choices))
    if info.minimum is not None:
        parts.append(f"≥ {info.minimum:g}")
    if info.exclusive_minimum is not None:
        parts.append(f"> {info.exclusive_minimum:g}")
    if info.maximum is not None:
        parts.append(f"≤ {info.maximum:g}")
    if info.aliases:
        parts.append("also spelled " + ", ".join(f"`{alias}`" for alias in info.aliases))
    return "; ".join(parts)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section_class(info: FieldInfo) -> type | None:
    candidates = [info.tp, *typing.get_args(info.tp)]
    for candidate in candidates:
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def key_table(cls: type, prefix: str = "") -> list[str]:
    """Markdown rows for every key of `cls`, nested sections flattened into dotted paths."""
    rows: list[str] = []
    nested: list[tuple[str, type]] = []
    for info in field_infos(cls):
        path = f"{prefix}{info.key}"
        section = _section_class(info)
        if section is not None and typing.get_origin(info.tp) is not tuple:
            rows.append(
                f"| `{path}` | section{' or null' if info.default() is None else ''} | "
                f"{'null' if info.default() is None else ''} | {_escape(info.doc)} |"
            )
            nested.append((path + ".", section))
            continue
        limits = limits_text(info)
        doc = _escape(info.doc) + (f" ({limits})" if limits else "")
        rows.append(f"| `{path}` | {type_name(info.tp)} | {default_text(info)} | {doc} |")
    for nested_prefix, section in nested:
        rows.extend(key_table(section, nested_prefix))
    return rows


CONFIG_INTRO = """\
# Config file reference

Generated from `refinery_py/config/settings.py` by `make docs`; do not edit by hand.

The config file is YAML with snake_case keys. Every key is optional: an empty or absent file means
the defaults below. Durations are written like `500ms`, `2s`, `1m30s` or `1h`; sizes like
`512MiB`, `2GiB` (powers of 1024) or `64MB` (powers of 1000). Unknown keys are errors, reported
with the file, the line and a "did you mean" suggestion; `refinery-py config check FILE` reports
every problem at once.
"""


def config_reference() -> str:
    lines = [CONFIG_INTRO, "| key | type | default | meaning |", "|---|---|---|---|"]
    lines.extend(key_table(Settings))
    return "\n".join(lines) + "\n"


def write_references(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "config.md"
    target.write_text(config_reference())
    return [target]


if __name__ == "__main__":
    for written in write_references(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")):
        print(f"wrote {written}")
