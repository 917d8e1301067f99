"""Load a rules file (Honeycomb Refinery's v2 format, read as-is) into a validated `RulesSpec`.

Every problem is reported with its line in one pass. Refinery's own rules files load unchanged;
what Refinery would accept but could never work (a regex it cannot compile, a Value that cannot
match its Datatype) is an error here, and what is legal but probably not meant is a warning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import yaml

from refinery_py.config.conditions import check_condition, read_fields
from refinery_py.config.loader import INVALID, Reader
from refinery_py.config.mapping_view import Entry, join_path
from refinery_py.config.problems import (
    ConfigError,
    Problem,
    has_errors,
    sorted_problems,
    suggestion,
)
from refinery_py.config.rule_lints import check_rule, check_rule_order
from refinery_py.config.rules_spec import (
    DEFAULT_TARGET,
    SAMPLER_TYPES,
    ConditionSpec,
    RulesBasedSpec,
    RuleSpec,
    RulesSpec,
    SamplerSpec,
)
from refinery_py.config.yaml_tree import compose, describe, is_null, line_of, scalar_value

RULES_VERSION = 2
DOWNSTREAM_TYPES = {name: cls for name, cls in SAMPLER_TYPES.items() if cls is not RulesBasedSpec}
_TOP_LEVEL_KEYS = ("RulesVersion", "Samplers")
_CONVERT_HINT = (
    "convert it to version 2 first, e.g. with Refinery's `convert` tool "
    "(`convert rules --input old-rules.toml --output rules.yaml`)"
)


def read_rules(
    text: str, source: str, *, digest: str | None = None
) -> tuple[RulesSpec | None, list[Problem]]:
    """Parse rules text: the spec (None if there are errors) and every problem, in line order."""
    root, problems = compose(text, source)
    if problems:
        return None, problems
    reader = _reader(source)
    samplers = _read_document(reader, root)
    problems = sorted_problems(reader.problems)
    if samplers is None or has_errors(problems):
        return None, problems
    digest = digest or hashlib.sha256(text.encode("utf-8")).hexdigest()
    spec = RulesSpec(
        rules_version=RULES_VERSION, samplers=samplers, source=source, digest=digest, text=text
    )
    return spec, problems


def parse_rules(text: str, source: str) -> RulesSpec:
    """Parse rules text; raises ConfigError listing every problem if there is any error."""
    spec, problems = read_rules(text, source)
    if spec is None:
        raise ConfigError(problems)
    return spec


def load_rules(path: str | Path) -> RulesSpec:
    """Read and parse a rules file; `digest` is the SHA-256 of its bytes."""
    spec, problems = _read_file(path)
    if spec is None:
        raise ConfigError(problems)
    return spec


def check_rules_file(path: str | Path) -> list[Problem]:
    """Every problem (errors and warnings) in a rules file; an empty list means it is clean."""
    return _read_file(path)[1]


def _read_file(path: str | Path) -> tuple[RulesSpec | None, list[Problem]]:
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, [Problem(source, 0, f"cannot read the rules file: {exc.strerror or exc}")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, [Problem(source, line, "the rules file is not valid UTF-8")]
    return read_rules(text, source, digest=hashlib.sha256(data).hexdigest())


def _reader(source: str) -> Reader:
    return Reader(
        source,
        hooks={(ConditionSpec, "fields"): read_fields, (RuleSpec, "sampler"): _read_downstream},
        checks={
            ConditionSpec: check_condition,
            RuleSpec: check_rule,
            RulesBasedSpec: check_rule_order,
        },
    )


def _read_document(reader: Reader, root: yaml.Node | None) -> dict[str, SamplerSpec] | None:
    """The samplers of a valid file, else None (with the reasons reported)."""
    if root is None or is_null(root):
        reader.error(1, "the rules file is empty; it needs RulesVersion: 2 and Samplers")
        return None
    if not isinstance(root, yaml.MappingNode):
        reader.error(line_of(root), f"a rules file is a mapping, found {describe(root)}")
        return None
    entries = {entry.key: entry for entry in reader.entries(root, "")}
    if not any(key in entries for key in _TOP_LEVEL_KEYS):
        # Probably a Refinery v1 rules file: one message beats an error per dataset section.
        reader.error(
            1, f"this is not a version 2 rules file (no RulesVersion or Samplers); {_CONVERT_HINT}"
        )
        return None
    for key, entry in entries.items():
        if key not in _TOP_LEVEL_KEYS:
            hint = suggestion(key, _TOP_LEVEL_KEYS)
            reader.error(entry.line, f"unknown key {key} at the top level{hint}")
    version_ok = _check_version(reader, entries.get("RulesVersion"))
    samplers = _read_samplers(reader, entries.get("Samplers"))
    return samplers if version_ok else None


def _check_version(reader: Reader, entry: Entry | None) -> bool:
    if entry is None:
        reader.error(1, "missing required key RulesVersion at the top level (it must be 2)")
        return False
    node = entry.value_node
    value = scalar_value(node) if isinstance(node, yaml.ScalarNode) else None
    if isinstance(value, bool) or not isinstance(value, int):
        reader.error(entry.value_line, f"RulesVersion must be 2, found {describe(node)}")
    elif value == 1:
        reader.error(entry.value_line, f"RulesVersion 1 files are not read; {_CONVERT_HINT}")
    elif value != RULES_VERSION:
        reader.error(entry.value_line, f"RulesVersion must be 2, found {value}")
    return value == RULES_VERSION and not isinstance(value, bool)


def _read_samplers(reader: Reader, entry: Entry | None) -> dict[str, SamplerSpec] | None:
    if entry is None:
        reader.error(1, "missing required key Samplers at the top level")
        return None
    if not isinstance(entry.value_node, yaml.MappingNode):
        reader.error(
            entry.value_line,
            "Samplers must be a mapping from target name to sampler, "
            f"found {describe(entry.value_node)}",
        )
        return None
    samplers: dict[str, SamplerSpec] = {}
    broken = False
    targets = reader.entries(entry.value_node, "Samplers")
    for target in targets:
        path = join_path("Samplers", target.key)
        spec = read_sampler(reader, target, path, SAMPLER_TYPES)
        if spec is INVALID:
            broken = True
        else:
            samplers[target.key] = spec  # type: ignore[assignment]
    if DEFAULT_TARGET not in {target.key for target in targets}:
        reader.error(
            entry.line,
            f"Samplers must include a {DEFAULT_TARGET} sampler, used for every other target",
        )
    return None if broken else samplers


def read_sampler(reader: Reader, entry: Entry, path: str, allowed: Mapping[str, type]) -> object:
    """A mapping naming exactly one sampler type (`DynamicSampler: {...}`), read into its spec."""
    node = entry.value_node
    if is_null(node) or (isinstance(node, yaml.MappingNode) and not node.value):
        reader.error(entry.line, f"{path} names no sampler; use one of {', '.join(allowed)}")
        return INVALID
    if not isinstance(node, yaml.MappingNode):
        reader.error(
            entry.value_line,
            f"{path} must be a mapping with one sampler type, found {describe(node)}",
        )
        return INVALID
    chosen: list[Entry] = []
    broken = False
    for item in reader.entries(node, path):
        if item.key in allowed:
            chosen.append(item)
        elif item.key in SAMPLER_TYPES:
            reader.error(
                item.line,
                f"{join_path(path, item.key)}: a rule's Sampler cannot be a {item.key}; "
                "rules do not nest",
            )
            broken = True
        else:
            hint = suggestion(item.key, allowed)
            reader.error(item.line, f"unknown sampler type {item.key} in {path}{hint}")
            broken = True
    if len(chosen) > 1:
        first, second = chosen[0], chosen[1]
        reader.error(
            second.line,
            f"{path} names two sampler types, {first.key} (line {first.line}) and "
            f"{second.key}; use exactly one",
        )
        return INVALID
    if not chosen:
        if not broken:
            reader.error(entry.line, f"{path} names no sampler; use one of {', '.join(allowed)}")
        return INVALID
    kind = chosen[0]
    spec = reader.read_dataclass(
        kind.value_node, allowed[kind.key], join_path(path, kind.key), kind.line
    )
    return INVALID if broken else spec


def _read_downstream(reader: Reader, entry: Entry, path: str) -> object:
    return read_sampler(reader, entry, path, DOWNSTREAM_TYPES)
