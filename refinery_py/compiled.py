"""The per-span modules compiled with mypyc, used when built and current; pure Python otherwise.

`make` builds them after installing (`refinery_py.compiled.main(["build"])`): mypyc compiles
COMPILED_MODULES (wire reading, the request splitter, the span reader, the buffer, the rules) to C
extension modules under build/compiled/, beside a manifest of the sources they came from: those
modules and every refinery_py module they import, with their hashes. When refinery_py is imported
(`install`, from the package's `__init__`), the manifest is checked against the files on disk;
if all are unchanged the compiled modules are imported instead of the sources, else everything
runs as pure Python. So an edited source never runs stale compiled code, and a machine without a
C compiler, or `REFINERY_PY_PURE=1` in the environment, runs the same code uncompiled.

The code is the same either way: mypy-strict Python, which mypyc compiles as written. Compiled,
loops over span bytes run about ten times faster, which is where per-span CPU goes.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
BUILD_DIR = PACKAGE.parent / "build" / "compiled"
MANIFEST = "manifest.json"
PURE_ENV = "REFINERY_PY_PURE"

COMPILED_MODULES = (
    "refinery_py.otlp.wire",
    "refinery_py.otlp.values",
    "refinery_py.otlp.checked",
    "refinery_py.otlp.ingest",
    "refinery_py.otlp.span_fields",
    "refinery_py.otlp.span_view",
    "refinery_py.otlp.frame",
    "refinery_py.otlp.batch_codec",
    "refinery_py.assemble.buffer",
    "refinery_py.assemble.decision_cache",
    "refinery_py.decide.rules",
    "refinery_py.decide.conditions",
    "refinery_py.decide.operators",
    "refinery_py.decide.comparisons",
    "refinery_py.decide.trace_key",
    "refinery_py.cluster.router",
    "refinery_py.cluster.ownership",
)
"""The modules that run per span or per trace. A module here must not be monkeypatched or
subclassed from Python (compiled classes and calls between compiled modules are native)."""

status = "pure Python (not installed yet)"
"""What this process runs: `compiled (N modules)`, or `pure Python (why)`."""


def _source(module: str) -> Path:
    return PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _toolchain() -> str:
    """The mypy that compiles, and the interpreter it compiles for: built for another, stale."""
    try:
        from mypy.version import __version__ as mypy_version  # noqa: PLC0415
    except ImportError:
        mypy_version = "none"
    return f"{sys.implementation.cache_tag} mypy {mypy_version}"


def _inputs(modules: Sequence[str]) -> list[str]:
    """The modules, and every refinery_py module they import, directly or not (sorted)."""
    found: set[str] = set()
    pending = list(modules)
    while pending:
        module = pending.pop()
        if module in found:
            continue
        path = _source(module)
        if not path.exists():
            path = path.with_suffix("") / "__init__.py"
        found.add(module)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            pending.extend(name for name in names if name.split(".")[0] == "refinery_py")
    return sorted(found)


def _input_path(module: str) -> Path:
    path = _source(module)
    return path if path.exists() else path.with_suffix("") / "__init__.py"


def _stale(manifest: dict[str, object]) -> str:
    """Why the build described by `manifest` cannot be used ("" when it can)."""
    if manifest.get("toolchain") != _toolchain():
        return f"built with {manifest.get('toolchain')}, running {_toolchain()}"
    if manifest.get("modules") != list(COMPILED_MODULES):
        return "the list of compiled modules changed"
    hashes = manifest.get("inputs")
    if not isinstance(hashes, dict):
        return "the manifest is damaged"
    for module, digest in hashes.items():
        path = _input_path(module)
        if not path.exists() or _digest(path) != digest:
            return f"{path.relative_to(PACKAGE.parent)} changed since the build"
    return ""


def _read_manifest(folder: Path) -> dict[str, object] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


class _CompiledFinder(MetaPathFinder):
    """Finds the compiled modules (and mypyc's shared library) in the build folder."""

    def __init__(self, locations: dict[str, Path]) -> None:
        self._locations = locations

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        location = self._locations.get(fullname)
        if location is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(location))
        return importlib.util.spec_from_file_location(fullname, location, loader=loader)


def _extension(folder: Path, module: str) -> Path | None:
    base = folder.joinpath(*module.split("."))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = base.with_name(base.name + suffix)
        if candidate.exists():
            return candidate
    return None


def install(folder: Path = BUILD_DIR) -> str:
    """Import the compiled modules from `folder` from now on, if they are current; say which."""
    global status  # noqa: PLW0603 - one process-wide fact, set once at import
    status = _install(folder)
    return status


def _install(folder: Path) -> str:
    if os.environ.get(PURE_ENV):
        return f"pure Python ({PURE_ENV} is set)"
    manifest = _read_manifest(folder)
    if manifest is None:
        return "pure Python (not compiled: `make` compiles it)"
    problem = _stale(manifest)
    if problem:
        return f"pure Python (the compiled build is stale: {problem}; `make` rebuilds it)"
    names = [*COMPILED_MODULES, str(manifest.get("library", ""))]
    locations = {name: _extension(folder, name) for name in names}
    missing = [name for name, location in locations.items() if location is None]
    if missing:
        return f"pure Python (the compiled build lacks {missing[0]})"
    if any(name in sys.modules for name in COMPILED_MODULES):
        return "pure Python (the modules were imported before the compiled build was installed)"
    sys.meta_path.insert(0, _CompiledFinder({n: p for n, p in locations.items() if p}))
    return f"compiled with mypyc ({len(COMPILED_MODULES)} modules)"


# ---- building ------------------------------------------------------------------------------


def _missing_tool() -> str:
    """What the build lacks on this machine ("" when nothing)."""
    for module in ("mypyc", "setuptools"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Python.h)"
    return ""


def build(folder: Path = BUILD_DIR) -> str:
    """Compile COMPILED_MODULES into `folder` unless a current build is there; say what
    happened. Never fails: without a compiler refinery_py runs as pure Python."""
    manifest = _read_manifest(folder)
    if manifest is not None and not _stale(manifest):
        return f"compiled modules are current ({folder})"
    missing = _missing_tool()
    if missing:
        return f"not compiled ({missing}): refinery_py runs as pure Python"
    inputs = _inputs(COMPILED_MODULES)
    with tempfile.TemporaryDirectory(prefix="refinery-compile-") as scratch:
        stage = Path(scratch) / "stage"
        chatter = io.StringIO()
        try:
            with contextlib.redirect_stdout(chatter):
                library = _compile(Path(scratch), stage)
        except BaseException:
            print(chatter.getvalue(), end="")
            raise
        (stage / MANIFEST).write_text(
            json.dumps(
                {
                    "toolchain": _toolchain(),
                    "modules": list(COMPILED_MODULES),
                    "library": library,
                    "inputs": {module: _digest(_input_path(module)) for module in inputs},
                },
                indent=1,
            )
        )
        if folder.exists():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(stage, folder)
    return f"compiled {len(COMPILED_MODULES)} modules with mypyc into {folder}"


def _compile(scratch: Path, stage: Path) -> str:
    """mypyc, then the C compiler, in `scratch`; the extension modules go to `stage`. Returns
    the name of mypyc's shared library module."""
    from mypyc.build import mypycify  # noqa: PLC0415 - a build-time dependency only
    from setuptools import setup  # noqa: PLC0415

    sources = [str(_source(module)) for module in COMPILED_MODULES]
    config = ["--config-file", str(PACKAGE.parent / "pyproject.toml")]
    previous = Path.cwd()
    # setuptools reads the project's pyproject.toml when run beside it; the build needs none.
    os.chdir(scratch)
    try:
        extensions = mypycify(
            [*config, *sources], opt_level="3", target_dir=str(scratch / "c"), multi_file=True
        )
        setup(
            name="refinery-py-compiled",
            ext_modules=extensions,
            script_args=[
                "--quiet",
                "build_ext",
                "--build-lib",
                str(stage),
                "--build-temp",
                str(scratch / "objects"),
                "--parallel",
                str(os.cpu_count() or 1),
            ],
        )
    finally:
        os.chdir(previous)
    libraries = [path.name.split(".")[0] for path in stage.glob("*__mypyc*")]
    if len(libraries) != 1:
        raise RuntimeError(f"expected one mypyc shared library, found {libraries}")
    return libraries[0]


def main(argv: Sequence[str]) -> int:
    """`build` or `status`, for the Makefile: `python -c 'from refinery_py.compiled import
    main; main(["build"])'` (not `-m`: importing the package has already imported this)."""
    command = argv[0] if argv else "status"
    if command == "build":
        print(build())
        return 0
    if command == "status":
        print(status)
        return 0
    print("usage: main(['build' | 'status'])", file=sys.stderr)
    return 2
