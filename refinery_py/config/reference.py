"""Reference docs generated from the same `option()` declarations the loader validates against.

`python -m refinery_py.config.reference DIR` writes `DIR/config.md` and `DIR/rules.md`; a test
fails when the committed files differ from what this produces, so the
docs cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from pathlib import Path

from refinery_py.config.addresses import EndpointText, HostPort
from refinery_py.config.rules_spec import (
    DATATYPES,
    OPERATORS,
    SAMPLER_TYPES,
    ConditionSpec,
    RuleSpec,
)
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
        if sum(dataclasses.is_dataclass(a) for a in args) > 1:
            return "sampler (one of the types above)" + (" or null" if type(None) in args else "")
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
    """The one dataclass a key holds (a nested section), or None; a choice of several (a
    downstream sampler) is documented where each is."""
    candidates = [
        candidate
        for candidate in (info.tp, *typing.get_args(info.tp))
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate)
    ]
    return candidates[0] if len(candidates) == 1 else None


def key_table(cls: type, prefix: str = "", *, expand_lists: bool = False) -> list[str]:
    """Markdown rows for every key of `cls`, nested sections flattened into dotted paths.

    With `expand_lists`, the keys of a list of sections are listed too, as `key[].item_key`
    (the rules reference documents those in sections of their own instead).
    """
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
        if section is not None and expand_lists:
            nested.append((path + "[].", section))
        limits = limits_text(info)
        doc = _escape(info.doc) + (f" ({limits})" if limits else "")
        shown = info.shown_type or type_name(info.tp)
        rows.append(f"| `{path}` | {shown} | {default_text(info)} | {doc} |")
    for nested_prefix, section in nested:
        rows.extend(key_table(section, nested_prefix, expand_lists=expand_lists))
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
    lines.extend(key_table(Settings, expand_lists=True))
    return "\n".join(lines) + "\n"


RULES_INTRO = """\
# Rules file reference

Generated from `refinery_py/config/rules_spec.py` by `make docs`; do not edit by hand.

refinery_py reads Honeycomb Refinery's v2 rules files as-is. A file has two top-level keys:

| key | meaning |
|---|---|
| `RulesVersion` | must be `2` (convert v1 files with Refinery's `convert` tool) |
| `Samplers` | a map from target name to exactly one sampler; `__default__` is required |

A trace's target is its root span's `deployment.environment.name` (or `deployment.environment`)
resource attribute when a sampler is configured under that name, else its `service.name` when one
is, else `__default__`. Durations are written like `30s` or `1m`.

`refinery-py rules check FILE` reports every error at once as `FILE:LINE: message`; warnings
(below) fail the check only with `--strict`.
"""

_FIELDS_TEXT = """\
## Fields a condition can name

Per span, with Refinery's flattening of OTLP:

| field | value |
|---|---|
| `trace.trace_id`, `trace.span_id` | hex IDs |
| `trace.parent_id` | hex parent span ID; absent on root spans |
| `name` | the span name |
| `span.kind`, `type` | `server`, `client`, `internal`, `producer`, `consumer`, `unspecified` |
| `duration_ms` | float |
| `status_code` | int: 0 unset, 1 ok, 2 error |
| `status_message` | the status message, absent when empty |
| `error` | `true` on spans whose status is error; absent on all others |
| `span.num_events`, `span.num_links` | ints |
| any attribute key | {attribute_order} |

Arrays and maps compare as JSON text, bytes as base64. Prefix a field with `root.` to read it from
the root span only (the condition fails when the trace has no root span yet). `?.NUM_DESCENDANTS`
is the number of spans in the trace.
""".format(
    attribute_order="span attributes, then scope attributes (plus `library.name` and "
    "`library.version` from the scope), then resource attributes; the first with the key wins"
)

OPERATOR_DOCS = {
    "=": "equal (numbers compare across int and float)",
    "!=": "not equal; a missing field does not match unless `Datatype: string`",
    ">": "greater than",
    "<": "less than",
    ">=": "greater than or equal",
    "<=": "less than or equal",
    "starts-with": "the field's text starts with Value",
    "contains": "the field's text contains Value",
    "does-not-contain": "the field's text does not contain Value (a missing field matches)",
    "exists": "the field is present (Value is ignored)",
    "not-exists": "the field is absent (Value is ignored)",
    "has-root-span": "the trace has (Value `true`) or lacks (`false`) its root span; trace scope",
    "matches": "the field's text matches the regular expression Value (Go RE2 syntax, unanchored)",
    "in": "the field equals one of the values in the list Value",
    "not-in": "the field equals none of the values in the list Value (a missing field matches)",
}
"""What each operator tests; every operator of `OPERATORS` has an entry (a test checks)."""

_LINTS_TEXT = """\
## Warnings

`rules check` warns (and `--strict` fails) on rules that are legal but rarely mean what they say:

- a negative operator (`!=`, `not-exists`, `does-not-contain`, `not-in`) in a trace-scope rule on
  a field that is not a `root.` field: it matches when ANY span passes, so almost always;
- `has-root-span` in a `Scope: span` rule (Refinery skips such a rule);
- a rule that can never be reached because an earlier rule in the same scope has the same or
  fewer conditions (a condition-less rule, or a `Drop` rule shadowing a keep rule);
- a rule with neither `SampleRate`, `Drop` nor `Sampler` (kept at rate 1; Refinery drops);
- `Drop` together with `SampleRate` or `Sampler`, a `Value` on `exists`/`not-exists`, and a float
  `Value` truncated by `Datatype: int`.
"""


def _keys_section(title: str, cls: type, text: str = "") -> list[str]:
    lines = [f"## {title}", ""]
    if text:
        lines += [text, ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += key_table(cls)
    return [*lines, ""]


def rules_reference() -> str:
    lines = [RULES_INTRO]
    for name, cls in SAMPLER_TYPES.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        lines += _keys_section(name, cls, doc)
    lines += _keys_section(
        "Rules (RulesBasedSampler.Rules[])",
        RuleSpec,
        "Rules are tried in order; the first whose conditions all match decides. The reason "
        "on kept spans is `rules/<scope>/<Name>`, with `:<downstream reason>` appended when a "
        "downstream Sampler decides. A trace no rule matches is kept at rate 1 "
        "(`no rule matched`).",
    )
    lines += _keys_section("Conditions (Rules[].Conditions[])", ConditionSpec)
    lines += ["## Operators", "", "| operator | matches when |", "|---|---|"]
    lines += [f"| `{op}` | {_escape(OPERATOR_DOCS[op])} |" for op in OPERATORS]
    lines += [
        "",
        "`Datatype` (" + ", ".join(f"`{d}`" for d in DATATYPES) + ") converts both sides before "
        "comparing, the way Refinery does.",
        "",
        _FIELDS_TEXT,
        _LINTS_TEXT,
    ]
    return "\n".join(lines).rstrip() + "\n"


def write_references(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, render in (("config.md", config_reference), ("rules.md", rules_reference)):
        target = directory / name
        target.write_text(render())
        written.append(target)
    return written


if __name__ == "__main__":
    for written in write_references(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")):
        print(f"wrote {written}")
