"""docs/architecture.md's rule for seams, enforced: every `typing.Protocol` asks for at most three
methods of its own, so a fake for a test stays small and a seam says one thing.

Properties do not count (they are the data a view shows, not calls), and neither do methods
inherited from other Protocols: a Protocol that joins two small seams for one holder (the rules
engine as the pipeline keeps it) adds nothing to either.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "refinery_py"
MAX_METHODS = 3


def _is_protocol(node: ast.ClassDef) -> bool:
    for base in node.bases:
        target = base.value if isinstance(base, ast.Subscript) else base
        if isinstance(target, ast.Name) and target.id == "Protocol":
            return True
        if isinstance(target, ast.Attribute) and target.attr == "Protocol":
            return True
    return False


def _is_property(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in function.decorator_list:
        name = decorator.attr if isinstance(decorator, ast.Attribute) else None
        if isinstance(decorator, ast.Name):
            name = decorator.id
        if name in {"property", "setter", "cached_property"}:
            return True
    return False


def methods_of(protocol: ast.ClassDef) -> list[str]:
    """The methods `protocol` declares itself: not properties, not dunders."""
    return [
        item.name
        for item in protocol.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        and not _is_property(item)
        and not (item.name.startswith("__") and item.name.endswith("__"))
    ]


def oversized(source: str, where: str) -> list[str]:
    """Protocols in `source` that declare more than MAX_METHODS methods."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and _is_protocol(node):
            methods = methods_of(node)
            if len(methods) > MAX_METHODS:
                problems.append(f"{where}:{node.lineno} {node.name}: {', '.join(methods)}")
    return problems


def test_every_protocol_is_a_small_seam() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        problems += oversized(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert problems == []


def test_the_checker_catches_a_large_protocol() -> None:
    source = (
        "import typing\n"
        "from typing import Protocol\n"
        "class Big(Protocol):\n"
        "    def a(self) -> None: ...\n"
        "    async def b(self) -> None: ...\n"
        "    def c(self) -> None: ...\n"
        "    def d(self) -> None: ...\n"
        "class Generic(typing.Protocol[int]):\n"
        "    def a(self) -> None: ...\n"
        "    def b(self) -> None: ...\n"
        "    def c(self) -> None: ...\n"
        "    def d(self) -> None: ...\n"
        "class View(Protocol):\n"
        "    @property\n"
        "    def a(self) -> int: ...\n"
        "    @property\n"
        "    def b(self) -> int: ...\n"
        "    def __len__(self) -> int: ...\n"
        "    def c(self) -> None: ...\n"
        "    def d(self) -> None: ...\n"
        "    def e(self) -> None: ...\n"
        "class Plain:\n"
        "    def a(self) -> None: ...\n"
        "    def b(self) -> None: ...\n"
        "    def c(self) -> None: ...\n"
        "    def d(self) -> None: ...\n"
    )
    assert oversized(source, "sample.py") == [
        "sample.py:3 Big: a, b, c, d",
        "sample.py:8 Generic: a, b, c, d",
    ]
