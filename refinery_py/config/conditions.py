"""Checks that a rule condition's Field, Operator, Value and Datatype make sense together.

Refinery accepts some conditions that can never match (a `Datatype: int` compared with "abc")
and silently skips rules whose regular expression does not compile. refinery_py reports those
when the file is loaded, with the line, instead of leaving a rule that quietly does nothing.
"""

from __future__ import annotations

from refinery_py.config.go_regex import GoRegexError, compile_go_regex
from refinery_py.config.go_values import go_bool, go_float, go_int, go_text
from refinery_py.config.loader import INVALID, Reader
from refinery_py.config.mapping_view import Entry, MappingView
from refinery_py.config.rules_spec import NUM_DESCENDANTS
from refinery_py.config.yaml_tree import describe_value, is_null

ORDERING = (">", "<", ">=", "<=")
VALUELESS = ("exists", "not-exists")
LIST_OPERATORS = ("in", "not-in")
HAS_ROOT_SPAN = "has-root-span"
COMPUTED_FIELDS = (NUM_DESCENDANTS,)
_TYPE_NAMES = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def read_fields(reader: Reader, entry: Entry, path: str) -> object:
    """`Field: name` or `Fields: [a, b]`, both stored as a tuple of field names."""
    if is_null(entry.value_node):
        reader.error(entry.value_line, f"{path} must name a field")
        return INVALID
    if entry.key == "Field":
        value = reader.read_value(entry.value_node, str, path)
        names: object = (value,) if isinstance(value, str) else INVALID
    else:
        names = reader.read_value(entry.value_node, tuple[str, ...], path)
        if names == ():
            reader.error(entry.value_line, f"{path} must list at least one field")
            return INVALID
    if not isinstance(names, tuple):
        return INVALID
    for name in names:
        if not name:
            reader.error(entry.value_line, f"{path} must not contain an empty field name")
            return INVALID
        if name.startswith("?.") and name not in COMPUTED_FIELDS:
            known = ", ".join(COMPUTED_FIELDS)
            reader.warning(
                entry.value_line,
                f"{path}: {name} is not a computed field ({known} is); it will never be present",
            )
    return names


def check_condition(reader: Reader, view: MappingView) -> None:
    """Cross-field checks of one condition; sets `pattern` for `matches`."""
    operator = view.values.get("operator")
    if not view.given("fields") and operator != HAS_ROOT_SPAN:
        reader.error(view.line_no, f"{view.path} needs a Field (or Fields) to test")
        view.fail("fields")
    if not isinstance(operator, str):
        return  # missing or misspelled; already reported
    if operator == HAS_ROOT_SPAN and view.given("fields"):
        reader.warning(view.line("fields"), f"{view.path_of('fields')} is ignored by {operator}")
    if operator in VALUELESS:
        if view.given("value"):
            reader.warning(view.line("value"), f"{view.path_of('value')} is ignored by {operator}")
        return
    value = view.values.get("value")
    if value is None:
        if view.ok("value"):
            reader.error(view.line("value"), f"{view.path} needs a Value for operator {operator}")
            view.fail("value")
        return
    datatype = view.values.get("datatype")
    problem = _value_problem(operator, value, datatype if isinstance(datatype, str) else None)
    if problem is not None:
        attr, message = problem
        line = view.line(attr) if attr == "datatype" else view.value_line(attr)
        reader.error(line, f"{view.path}: {message}")
        view.fail(attr)
        return
    if isinstance(value, float) and datatype == "int" and not value.is_integer():
        reader.warning(
            view.value_line("value"),
            f"{view.path_of('value')} {go_text(value)} is truncated to {go_int(value)} "
            "by Datatype int",
        )
    if operator == "matches":
        _compile_pattern(reader, view, value)


def _value_problem(operator: str, value: object, datatype: str | None) -> tuple[str, str] | None:
    """(the key to blame, why) when this Value cannot work with the operator and Datatype."""
    if operator == HAS_ROOT_SPAN:
        if go_bool(value) is None:
            return (
                "value",
                f"has-root-span needs Value true or false, found {describe_value(value)}",
            )
        return None
    if datatype == "bool" and (operator in ORDERING or operator in LIST_OPERATORS):
        hint = "; use = or !=" if operator in ORDERING else ""
        return "datatype", f"Datatype bool cannot be used with {operator}{hint}"
    if operator in LIST_OPERATORS:
        message = _list_problem(operator, value, datatype)
    elif isinstance(value, tuple):
        message = f"a list Value only works with in and not-in, not with {operator}"
    elif operator in ORDERING or operator in ("=", "!="):
        message = _datatype_problem(value, datatype)
    else:
        message = None
    return None if message is None else ("value", message)


def _list_problem(operator: str, value: object, datatype: str | None) -> str | None:
    items = value if isinstance(value, tuple) else (value,)
    if isinstance(value, bool):
        return f"{operator} needs a list of values or a single string or number, found {value}"
    for item in items:
        if isinstance(item, tuple):
            return f"{operator} needs a flat list of values, found a list inside the list"
        if item is None:
            return f"{operator} values cannot be null"
    kinds = list(dict.fromkeys(type(item) for item in items))
    if len(kinds) > 1:
        named = " and ".join(_TYPE_NAMES.get(kind, kind.__name__) for kind in kinds)
        return f"the {operator} list mixes {named}; Refinery needs values of one type"
    for item in items:
        problem = _datatype_problem(item, datatype)
        if problem is not None:
            return problem
    return None


def _datatype_problem(value: object, datatype: str | None) -> str | None:
    """A Value that no span value can equal once both are converted to the Datatype."""
    convert = {"int": go_int, "float": go_float, "bool": go_bool}.get(datatype or "")
    if convert is None or convert(value) is not None:
        return None
    article = "an" if datatype == "int" else "a"
    shown = repr(value) if isinstance(value, str) else go_text(value)
    return f"Value {shown} is not {article} {datatype}, so the condition can never match"


def _compile_pattern(reader: Reader, view: MappingView, value: object) -> None:
    try:
        view.set("pattern", compile_go_regex(go_text(value)))
    except GoRegexError as exc:
        line = view.value_line("value")
        reader.error(line, f"{view.path_of('value')} is not a valid regular expression: {exc}")
        view.fail("value")
