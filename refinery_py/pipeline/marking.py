"""When to mark spans as they are buffered (see `otlp.span_fields.span_marks`).

A mark costs about 0.3 µs per span, taken while the span is still in the cache. It
pays when the rules ask every span of a trace for a field that few spans have (`error`, a flag
attribute): deciding then walks only the spans that have it. It is wasted when the rules never
ask (they read root fields only, or nothing), and when most spans have a field the rules ask
about (`http.route` tested on every span): those spans are walked anyway. So marking follows
what it measures, as moving averages: the share of decided traces whose rules asked a question
marks answer, and the share of marked spans that have a mark for a question asked. While marking
does not pay, one batch in `PROBE_EVERY` is still marked, so a change of traffic or rules turns
it back on.
"""

from __future__ import annotations

from typing import Final

from refinery_py.otlp.span_fields import FieldPlan, count_marked, span_marks

PROBE_EVERY: Final = 32
"""While marking does not pay, one batch in this many is marked anyway, to measure again."""
MAX_MARKED_SHARE: Final = 0.5
"""Above this share of spans with a mark asked for, marks spare too few walks to pay."""
MIN_ASKED_SHARE: Final = 0.05
"""Below this share of decided traces asking what marks answer, marks go mostly unused."""
_WEIGHT: Final = 0.05
"""Weight of each new observation in the moving averages (about the last few dozen count)."""


class Marking:
    """Marks for the batches worth marking, by the measures above."""

    def __init__(self, plan: FieldPlan) -> None:
        self.plan = plan
        self.marked_share = 0.0
        """Moving average, over marked batches, of the share of spans with a mark asked for."""
        self.asked_share = 1.0
        """Moving average, over decided traces, of the share that asked what marks answer."""
        self.asked_bits = 0
        """The mark bits samplers have asked for."""
        self.covered = 0
        """The bits the last marks returned are exact for (see `FieldPlan.marking`)."""
        self._screen = b""
        self._made_for = (-1, -1)
        self._batches = 0

    @property
    def pays(self) -> bool:
        return self.marked_share <= MAX_MARKED_SHARE and self.asked_share >= MIN_ASKED_SHARE

    def marks(self, spans: list[bytes]) -> list[int] | None:
        """The spans' marks, exact for the bits of `covered`, or None: not worth it now.

        Marks cover the error status and the keys samplers have asked about (every planned key
        until the first question): screening keys for those skips most attributes at once.
        """
        self._batches += 1
        if not spans or not self.plan.walks:
            return None
        if not self.pays and self._batches % PROBE_EVERY:
            return None
        plan = self.plan
        made_for = (self.asked_bits, len(plan.keys))
        if made_for != self._made_for:
            self.covered, self._screen = plan.marking(self.asked_bits or -1)
            self._made_for = made_for
        marks = span_marks(spans, plan, self._screen)
        share = count_marked(marks, self.asked_bits) / len(marks)
        self.marked_share += _WEIGHT * (share - self.marked_share)
        return marks

    def decided(self, asked_bits: int) -> None:
        """One trace was decided; its samplers asked what these mark bits answer."""
        self.asked_bits |= asked_bits
        self.asked_share += _WEIGHT * ((1.0 if asked_bits else 0.0) - self.asked_share)
