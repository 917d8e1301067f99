"""YAML text → node tree with line numbers, and scalars read the way Refinery reads them.

The loader works on `yaml.compose` nodes rather than constructed Python objects so every value
keeps its line. Plain scalars are resolved by YAML 1.2's core schema as Go's yaml.v3 (Refinery's
parser) applies it, not PyYAML's YAML 1.1 rules: `Value: no` is the string "no" and `12:30` is a
string, not the sexagesimal integer 750, so a rules file means the same thing in both programs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import yaml

from refinery_py.config.problems import Problem

STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
# YAML 1.1 booleans: yaml.v3 still accepts them where a bool is expected (never in `Value`).
_TRUE_11 = _TRUE | {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"}
_FALSE_11 = _FALSE | {"n", "N", "no", "No", "NO", "off", "Off", "OFF"}
_INT = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[0-9]+)")
_FLOAT = re.compile(r"[-+]?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")
_SPECIAL_FLOATS = {
    ".inf": math.inf,
    ".Inf": math.inf,
    ".INF": math.inf,
    "+.inf": math.inf,
    "+.Inf": math.inf,
    "+.INF": math.inf,
    "-.inf": -math.inf,
    "-.Inf": -math.inf,
    "-.INF": -math.inf,
    ".nan": math.nan,
    ".NaN": math.nan,
    ".NAN": math.nan,
}
_RESOLVER = yaml.resolver.Resolver()
_MAX_EXPANDED_NODES = 1_000_000
_MAX_DEPTH = 100


def compose(text: str, source: str) -> tuple[yaml.Node | None, list[Problem]]:
    """Parse one YAML document into nodes; a syntax error becomes a Problem at YAML's line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        return None, [Problem(source, 0, "the YAML is nested too deeply to read")]
    except yaml.MarkedYAMLError as exc:
        return None, [Problem(source, *_syntax_error(exc))]
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
        return None, [Problem(source, line, f"YAML cannot contain the character {char!r}")]
    except yaml.YAMLError as exc:
        return None, [Problem(source, 0, f"YAML error: {exc}")]
    shape_problem = _shape_problem(root)
    if shape_problem is not None:
        line, message = shape_problem
        return None, [Problem(source, line, message)]
    return root, []


def _syntax_error(exc: yaml.MarkedYAMLError) -> tuple[int, str]:
    """YAML's own words, at the line it points to, saying where an unclosed construct began."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 0
    message = f"YAML syntax error: {exc.problem or exc.context or 'malformed YAML'}"
    if exc.context and exc.problem:
        begun = exc.context_mark.line + 1 if exc.context_mark is not None else line
        message += f" ({exc.context}" + (f" that starts at line {begun})" if begun != line else ")")
    return line, message


def line_of(node: yaml.Node) -> int:
    """1-based line where a node starts."""
    return int(node.start_mark.line) + 1


def scalar_value(node: yaml.ScalarNode) -> object:
    """The value of a scalar: None, bool, int, float or str (see the module docstring)."""
    text = str(node.value)
    if node.style is not None or _explicitly_string(node):
        return text
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return _number(text)


def bool_value(node: yaml.ScalarNode) -> bool | None:
    """A scalar read as a bool the way yaml.v3 fills a bool field (YAML 1.1 words too)."""
    text = str(node.value)
    if node.style is not None or _explicitly_string(node):
        return None
    if text in _TRUE_11:
        return True
    if text in _FALSE_11:
        return False
    return None


def describe(node: yaml.Node) -> str:
    """What a value is, for messages like 'expected an integer, found a list'."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return describe_value(scalar_value(node))  # type: ignore[arg-type]


def describe_value(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value:g}"
    if isinstance(value, tuple | list):
        return "a list"
    text = str(value)
    shown = text if len(text) <= 40 else text[:37] + "..."
    return f"the string {shown!r}"


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and scalar_value(node) is None


def mapping_pairs(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    """Key/value node pairs with `<<` merge keys expanded (the mapping's own keys win)."""
    own: list[tuple[yaml.Node, yaml.Node]] = []
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag == MERGE_TAG:
            sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for source in sources:
                if isinstance(source, yaml.MappingNode):
                    merged.extend(mapping_pairs(source))
        else:
            own.append((key, value))
    own_keys = {key.value for key, _ in own if isinstance(key, yaml.ScalarNode)}
    yield from own
    for key, value in merged:
        if not (isinstance(key, yaml.ScalarNode) and key.value in own_keys):
            yield key, value


def _shape_problem(root: yaml.Node | None) -> tuple[int, str] | None:
    """An alias that contains itself, aliases expanding to an absurd number of values, or
    nesting deep enough to exhaust Python's recursion limit in the (recursive) loader.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the current path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)] if root is not None else []
    while stack:
        node, finished = stack.pop()
        children = _children(node)
        if finished:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > _MAX_EXPANDED_NODES:
                return line_of(node), "YAML aliases here expand to too many values"
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            return line_of(node), "a YAML alias here refers to a value that contains it"
        open_nodes.add(id(node))
        if len(open_nodes) > _MAX_DEPTH:
            return line_of(node), f"values are nested more than {_MAX_DEPTH} levels deep"
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _explicitly_string(node: yaml.ScalarNode) -> bool:
    """True for `!!str 123`: tagged str although the plain text would resolve to something else."""
    if node.tag != STR_TAG:
        return False
    implicit: object = _RESOLVER.resolve(yaml.ScalarNode, node.value, (True, False))  # type: ignore[no-untyped-call]
    return implicit != STR_TAG


def _number(text: str) -> object:
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    # yaml.v3 lets `_` separate digits (1_000_000) in anything that starts like a number.
    digits = text.replace("_", "") if text and text[0] in "+-0123456789" else text
    if _INT.fullmatch(digits):
        return _parse_int(digits)
    if _FLOAT.fullmatch(digits) and any(ch.isdigit() for ch in digits):
        return float(digits)
    return text


def _parse_int(digits: str) -> int:
    sign = -1 if digits.startswith("-") else 1
    body = digits.lstrip("+-")
    prefix = body[:2].lower()
    if prefix in ("0x", "0o", "0b"):
        return sign * int(body, 0)
    # A leading zero still means octal in yaml.v3 (YAML 1.1 compatibility): 0755 is 493.
    if len(body) > 1 and body.startswith("0") and all(ch in "01234567" for ch in body):
        return sign * int(body, 8)
    return sign * int(body, 10)
