"""A sample rate made ready for the hot path: its hash bound, and one key's decisions at it."""

from __future__ import annotations

from refinery_py.decide.hashing import upper_bound
from refinery_py.model import Decision


class Rate:
    """A rate, its hash bound, and the decisions for the key it belongs to, built on first use
    (shared entries, such as a size class's, leave them unset)."""

    __slots__ = ("bound", "drop", "keep", "rate")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.bound = upper_bound(rate)
        self.keep: Decision | None = None
        self.drop: Decision | None = None
