"""When a node is stressed long enough to relieve it, and calm long enough to stop.

Stress is what admission would otherwise answer with backpressure: decisions running behind, or
the buffer over its memory budget. A node in `relieve` mode that has been stressed for
`activate_after` seconds stops buffering new traces and decides each on arrival instead (see
the pipeline); it returns to normal once it has been calm — well below both limits — for
`deactivate_after` seconds. The two thresholds and the two delays are the hysteresis that keeps
a node from flapping at the edge.
"""

from __future__ import annotations


class StressGauge:
    """Tracks stress over time; pure: the caller passes `now`."""

    __slots__ = (
        "_activate_after",
        "_calm_since",
        "_deactivate_after",
        "_stressed_since",
        "active",
        "reason",
    )

    def __init__(self, activate_after: float, deactivate_after: float) -> None:
        self._activate_after = activate_after
        self._deactivate_after = deactivate_after
        self._stressed_since: float | None = None
        self._calm_since: float | None = None
        self.active = False
        self.reason = ""
        """Why relief started (while active)."""

    def observe(self, stress: str, calm: bool, now: float) -> bool:
        """Note the node's state (`stress`: why it is stressed, "" when it is not; `calm`: well
        below every limit); True when relief starts or stops with this observation."""
        if stress:
            self._calm_since = None
            if self._stressed_since is None:
                self._stressed_since = now
            if not self.active and now - self._stressed_since >= self._activate_after:
                self.active, self.reason = True, stress
                return True
            return False
        self._stressed_since = None
        if not calm:
            self._calm_since = None
            return False
        if self._calm_since is None:
            self._calm_since = now
        if self.active and now - self._calm_since >= self._deactivate_after:
            self.active, self.reason = False, ""
            return True
        return False
