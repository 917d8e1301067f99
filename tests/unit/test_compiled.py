"""The mypyc-compiled modules: used only when current, and deciding exactly as pure Python does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refinery_py import compiled

REPO = Path(__file__).resolve().parents[2]


def _manifest(folder: Path, **overrides: object) -> None:
    manifest: dict[str, object] = {
        "toolchain": compiled._toolchain(),
        "modules": list(compiled.COMPILED_MODULES),
        "library": "none__mypyc",
        "inputs": {
            module: compiled._digest(compiled._input_path(module))
            for module in compiled._inputs(compiled.COMPILED_MODULES)
        },
    }
    manifest.update(overrides)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / compiled.MANIFEST).write_text(json.dumps(manifest))


def _stale(folder: Path) -> str:
    manifest = compiled._read_manifest(folder)
    assert manifest is not None
    return compiled._stale(manifest)


def test_a_build_of_the_sources_on_disk_is_current(tmp_path: Path) -> None:
    _manifest(tmp_path)
    assert _stale(tmp_path) == ""


def test_an_edited_source_makes_the_build_stale(tmp_path: Path) -> None:
    inputs = dict.fromkeys(compiled._inputs(compiled.COMPILED_MODULES), "0" * 64)
    _manifest(tmp_path, inputs=inputs)
    assert "changed since the build" in _stale(tmp_path)


def test_modules_the_compiled_ones_import_are_inputs_too() -> None:
    inputs = compiled._inputs(compiled.COMPILED_MODULES)
    assert "refinery_py.model.batch" in inputs  # imported by refinery_py.model
    assert "refinery_py.config.rules_spec" in inputs  # by the rules
    assert "refinery_py.app" not in inputs


def test_another_interpreter_or_module_list_makes_the_build_stale(tmp_path: Path) -> None:
    _manifest(tmp_path, toolchain="cpython-399 mypy 0.1")
    assert "built with cpython-399" in _stale(tmp_path)
    _manifest(tmp_path, modules=["refinery_py.otlp.wire"])
    assert "list of compiled modules changed" in _stale(tmp_path)


def test_without_a_current_build_everything_runs_as_pure_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finders = list(sys.meta_path)
    monkeypatch.delenv(compiled.PURE_ENV, raising=False)  # the suite may run with it set
    assert compiled._install(tmp_path / "absent").startswith("pure Python (not compiled")
    _manifest(tmp_path, toolchain="elsewhere")
    assert compiled._install(tmp_path).startswith("pure Python (the compiled build is stale")
    monkeypatch.setenv(compiled.PURE_ENV, "1")
    assert compiled._install(tmp_path) == f"pure Python ({compiled.PURE_ENV} is set)"
    assert sys.meta_path == finders


def test_this_process_says_what_it_runs() -> None:
    assert compiled.status.startswith(("compiled with mypyc", "pure Python ("))
    if compiled.status.startswith("compiled"):
        from refinery_py.otlp import span_fields

        assert not span_fields.__file__.endswith(".py")
        assert span_fields.COMPILED


_WORKLOAD = """
import hashlib
from refinery_py import compiled
from tests.unit.otlp.test_field_order import VARIANTS, _decide, _reencoded
from tests.otlp_traffic import varied_requests

canonical = varied_requests(seed=11, traces=60)
results = [_decide(canonical), _decide(canonical, dry_run=True)]
results += [_decide(_reencoded(canonical, variant)) for variant in VARIANTS[:3]]
print(compiled.status.split()[0], hashlib.sha256(repr(results).encode()).hexdigest())
"""


def test_compiled_and_pure_python_decide_and_export_alike() -> None:
    """Every decision and every exported byte, over varied traffic in several encodings."""
    if not compiled.status.startswith("compiled"):
        pytest.skip(f"nothing compiled to compare with: {compiled.status}")

    def run(pure: bool) -> tuple[str, str]:
        env = dict(os.environ)
        env.pop(compiled.PURE_ENV, None)
        if pure:
            env[compiled.PURE_ENV] = "1"
        result = subprocess.run(
            [sys.executable, "-c", _WORKLOAD],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        mode, digest = result.stdout.split()
        return mode, digest

    (pure_mode, pure), (compiled_mode, fast) = run(pure=True), run(pure=False)
    assert (pure_mode, compiled_mode) == ("pure", "compiled")
    assert pure == fast
