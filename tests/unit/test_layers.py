"""docs/architecture.md's import layers, enforced: the data flow stays visible in the folders."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "refinery_py"

CORE_FORBIDDEN = {"asyncio", "grpc", "aiohttp", "prometheus_client", "time", "random", "threading"}
EDGE_FRAMEWORKS = {"asyncio", "grpc", "aiohttp", "prometheus_client"}

# folder → (refinery_py packages it may import, third-party top-level modules it may import,
#           standard-library modules it must not import)
LAYERS: dict[str, tuple[set[str], set[str], set[str]]] = {
    "model": (set(), set(), set()),
    "otlp": (
        {"model"},
        {"google", "opentelemetry", "orjson", "mypy_extensions", "librt"},
        EDGE_FRAMEWORKS,
    ),
    "config": ({"model"}, {"yaml", "re2"}, EDGE_FRAMEWORKS),
    "assemble": ({"model", "config", "otlp"}, set(), CORE_FORBIDDEN),
    "decide": ({"model", "config"}, {"xxhash"}, CORE_FORBIDDEN),
    "telemetry": ({"model"}, {"prometheus_client"}, set()),
    "receive": (
        {"model", "otlp", "telemetry"},
        # zstd: backports.zstd, or from 3.14 the standard library's compression.zstd (not in
        # this interpreter's list of standard modules).
        {"grpc", "aiohttp", "google", "opentelemetry", "backports", "compression"},
        set(),
    ),
    "export": (
        {"model", "otlp", "telemetry"},
        {"grpc", "aiohttp", "google", "opentelemetry"},
        set(),
    ),
    "store": ({"model", "otlp", "telemetry"}, {"google", "opentelemetry", "orjson"}, set()),
    "cluster": (
        {"model", "otlp", "telemetry"},
        {"grpc", "aiohttp", "google", "opentelemetry", "orjson", "redis", "xxhash"},
        set(),
    ),
    "security": ({"model", "config", "telemetry"}, {"grpc"}, set()),
    "replay": (
        {"model", "otlp", "config", "assemble", "decide"},
        {"google", "opentelemetry", "orjson"},
        {"asyncio", "grpc", "aiohttp", "prometheus_client"},
    ),
    # The composition root is a package: one node, its worker processes, and their supervisor.
    "app": (
        {
            "model",
            "otlp",
            "config",
            "assemble",
            "decide",
            "receive",
            "export",
            "store",
            "cluster",
            "api",
            "security",
            "telemetry",
            "pipeline",
        },
        {"aiohttp", "prometheus_client", "grpc", "uvloop"},
        set(),
    ),
    # The async driver: the only code that brings the core and the edges together.
    "pipeline": (
        {"model", "otlp", "config", "assemble", "decide", "cluster", "telemetry"},
        set(),
        set(),
    ),
    "api": (
        {"model", "otlp", "config", "assemble", "decide", "store", "cluster", "telemetry"},
        {"aiohttp", "prometheus_client", "orjson", "google", "opentelemetry"},
        set(),
    ),
}
TOP_LEVEL_MODULES = {"app", "cli", "compiled", "__main__", "__init__"}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def violations() -> list[str]:
    problems: list[str] = []
    stdlib = sys.stdlib_module_names
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if len(relative.parts) == 1:
            if relative.stem not in TOP_LEVEL_MODULES:
                problems.append(f"{relative}: modules at the top level are {TOP_LEVEL_MODULES}")
            continue
        folder = relative.parts[0]
        if folder not in LAYERS:
            problems.append(f"{relative}: folder {folder!r} is not in the documented layout")
            continue
        allowed_packages, allowed_third_party, forbidden_stdlib = LAYERS[folder]
        for line, module in imports_of(path):
            top = module.split(".")[0]
            where = f"refinery_py/{relative}:{line}"
            if top == "refinery_py":
                parts = module.split(".")
                target = parts[1] if len(parts) > 1 else ""
                # The package root holds only __version__, so anyone may read it.
                if target and target != folder and target not in allowed_packages:
                    problems.append(f"{where}: {folder}/ may not import refinery_py.{target}")
            elif top == "__future__":
                continue
            elif top in stdlib:
                if top in forbidden_stdlib:
                    problems.append(f"{where}: {folder}/ may not import {top}")
            elif top not in allowed_third_party:
                problems.append(f"{where}: {folder}/ may not import third-party {top}")
    return problems


def test_every_module_respects_the_import_layers() -> None:
    assert violations() == []


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import asyncio\nfrom refinery_py.receive import x\n")
    assert [name for _, name in imports_of(sample)] == ["asyncio", "refinery_py.receive"]
