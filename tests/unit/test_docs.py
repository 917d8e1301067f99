"""Generated reference docs must match the code: `make docs` regenerates them."""

from __future__ import annotations

from pathlib import Path

from refinery_py.config.reference import write_references

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_generated_references_are_up_to_date(tmp_path: Path) -> None:
    for generated in write_references(tmp_path):
        committed = DOCS / generated.name
        assert committed.exists(), f"docs/{generated.name} is missing: run `make docs`"
        assert committed.read_text() == generated.read_text(), (
            f"docs/{generated.name} is stale: run `make docs`"
        )


def test_every_operator_is_documented() -> None:
    from refinery_py.config.reference import OPERATOR_DOCS
    from refinery_py.config.rules_spec import OPERATORS

    assert set(OPERATOR_DOCS) == set(OPERATORS)
