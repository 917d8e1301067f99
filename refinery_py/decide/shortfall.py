"""The one-line explanation of a missed goal, with the numbers an operator needs to act on it.

The pipeline logs it once per window and sets `refinery_sampler_goal_unreachable` for the
sampler; the message says which goal, what it allows per window, what the keys needed instead,
the least the sampler could have kept, and what it did about it.
"""

from __future__ import annotations

from collections.abc import Callable

from refinery_py.decide.allotment import (
    SHORTFALL_KEYS,
    SHORTFALL_MINIMUM,
    SHORTFALL_SHARE,
    Allotment,
)


def explain(
    *,
    sampler: str,
    window: int,
    goal: str,
    goal_budget: float,
    period: float,
    allotment: Allotment,
    achievable: Callable[[float], str],
) -> str:
    """Why `allotment` misses the goal `goal` (which allows `goal_budget` spans per `period`
    seconds); `achievable(spans)` says what keeping that many spans per period means in the
    goal's own unit (a rate, or spans per second)."""
    head = (
        f"sampler {sampler}: goal unreachable in window {window}: "
        f"{goal} allows {goal_budget:.0f} kept spans per {period:g}s"
    )
    keys = round(allotment.keys)
    if allotment.shortfall == SHORTFALL_KEYS:
        return (
            f"{head}, but {keys} keys need {allotment.one_trace:.0f} to keep one trace each "
            f"(least achievable: {achievable(allotment.one_trace)}); every key was sampled "
            "evenly, so some keys kept no trace"
        )
    if allotment.shortfall == SHORTFALL_MINIMUM:
        scale = (allotment.budget - allotment.one_trace) / (allotment.minimum - allotment.one_trace)
        return (
            f"{head}, but the PerKeyMinPerSec floors of {keys} keys need "
            f"{allotment.minimum:.0f} (least achievable: {achievable(allotment.minimum)}); "
            f"each key kept one trace and {100 * scale:.0f}% of the rest of its floor"
        )
    if allotment.shortfall == SHORTFALL_SHARE:
        return (
            f"{head}, but PerKeyMaxShare lets {keys} keys keep only {allotment.usable:.0f} "
            f"({100 * allotment.usable / goal_budget:.0f}% of the goal) while they sent "
            f"{allotment.demand:.0f}"
        )
    return f"{head}: {allotment.shortfall}"
