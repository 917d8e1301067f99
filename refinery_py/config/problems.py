"""Problems found in a config or rules file, and how they are phrased for people.

Loading never stops at the first mistake: every problem is collected with the line it concerns,
so one `refinery-py rules check` run shows everything that needs fixing.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: `source` is the file, `line` is 1-based (0 when it concerns the whole file)."""

    source: str
    line: int
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line > 0 else self.source
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class ConfigError(Exception):
    """A file could not be loaded; `problems` holds every finding (errors and warnings)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def has_errors(problems: Iterable[Problem]) -> bool:
    return any(problem.is_error for problem in problems)


def sorted_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Problems in file order; findings on the same line keep the order they were found in."""
    return sorted(problems, key=lambda problem: problem.line)


def suggestion(word: str, candidates: Iterable[str]) -> str:
    """`; did you mean X?` for the closest candidate, or "" when nothing is close."""
    match = closest(word, candidates)
    return f"; did you mean {match}?" if match is not None else ""


def closest(word: str, candidates: Iterable[str], *, fuzzy: bool = True) -> str | None:
    """The candidate `word` was probably meant to be, if any.

    Case, `_` and `-` are ignored first (`samplerate` → `SampleRate`, `trace-timeout` →
    `trace_timeout`); then, if `fuzzy`, difflib looks for near misses in the lowercased names.
    """
    names = list(dict.fromkeys(candidates))
    folded = {_fold(name): name for name in names}
    exact = folded.get(_fold(word))
    if exact is not None or not fuzzy:
        return exact
    close = difflib.get_close_matches(_fold(word), list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None


def _fold(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")
