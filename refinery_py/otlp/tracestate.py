"""W3C `tracestate`, and the sampling threshold OpenTelemetry keeps in it (`ot=th:…`).

OpenTelemetry's probability-sampling convention (specification/trace/
tracestate-probability-sampling.md and tracestate-handling.md) records how a span was sampled as
a 56-bit *rejection threshold* T: of 2^56 equally likely randomness values, the T smallest are
dropped, so a span kept with probability p has T = (1 - p) * 2^56 and counts as
2^56 / (2^56 - T) spans (its adjusted count). T is written as up to 14 hex digits with trailing
zeros removed, in the `th` sub-key of the `ot` list-member: `ot=th:0` is "kept everything",
`ot=th:8` one in two, `ot=th:e6666666666666` one in ten.

refinery_py writes the rate a kept span carries (its outgoing `SampleRate`) this way too, so
OpenTelemetry-aware backends compute the same adjusted counts, and reads an incoming `th` as an
incoming rate. Editing follows W3C Trace Context: the modified `ot` member moves to the front of
the list, other members stay as they were, in order; within `ot`, `th` comes first and the other
sub-keys (`rv`, …) follow unchanged.
"""

from __future__ import annotations

MAX_ADJUSTED_COUNT = 1 << 56
"""2^56: the number of distinct randomness values, and the largest adjusted count."""

MAX_MEMBERS = 32
"""W3C: a tracestate holds at most 32 list-members; past that the right-most ones go."""

MAX_OT_VALUE = 256
"""OpenTelemetry: the `ot` member's value is at most 256 characters."""

_HEX = frozenset("0123456789abcdefABCDEF")


def threshold_for_rate(rate: int) -> int:
    """The rejection threshold of keeping one span in `rate` (rates below 1 count as 1).

    Exact to the nearest of the 2^56 steps, so a backend's adjusted count rounds back to `rate`.
    Rates beyond 2^56 are kept at the smallest probability there is (threshold 2^56 - 1).
    """
    if rate <= 1:
        return 0
    kept = (MAX_ADJUSTED_COUNT + rate // 2) // rate
    return MAX_ADJUSTED_COUNT - max(kept, 1)


def encode_threshold(threshold: int) -> str:
    """The `th` value: 14 hex digits with the trailing zeros removed (`0` for zero)."""
    if threshold == 0:
        return "0"
    return f"{threshold:014x}".rstrip("0")


def parse_threshold(value: str) -> int | None:
    """The threshold a `th` value stands for (1-14 hex digits, padded with zeros on the right),
    or None when it is not one."""
    if not 1 <= len(value) <= 14 or not _HEX.issuperset(value):
        return None
    return int(value.ljust(14, "0"), 16)


def rate_for_threshold(threshold: int) -> int:
    """The adjusted count of a span sampled at `threshold`, rounded to the nearest integer."""
    kept = MAX_ADJUSTED_COUNT - threshold
    return max((MAX_ADJUSTED_COUNT + kept // 2) // kept, 1)


def incoming_rate(tracestate: str) -> int | None:
    """The rate of an `ot=th:…` in `tracestate`, or None when there is no valid one."""
    if "th:" not in tracestate:
        return None
    _, ot_value = _split_ot(_members(tracestate))
    if ot_value is None:
        return None
    for sub_key in ot_value.split(";"):
        name, _, value = sub_key.partition(":")
        if name == "th":
            threshold = parse_threshold(value)
            return None if threshold is None else rate_for_threshold(threshold)
    return None


def with_threshold(tracestate: str, threshold: int) -> str:
    """`tracestate` with `ot`'s `th` set to `threshold`, the `ot` member moved to the front.

    Other `ot` sub-keys are kept after `th`, unless the value would then exceed 256 characters,
    in which case `ot` holds `th` alone. Other members keep their text and order; past 32
    members, the right-most go.
    """
    others, ot_value = _split_ot(_members(tracestate))
    th = "th:" + encode_threshold(threshold)
    kept = [s for s in (ot_value or "").split(";") if s and not s.startswith("th:")]
    value = ";".join([th, *kept])
    if len(value) > MAX_OT_VALUE:
        value = th
    return ",".join(["ot=" + value, *others[: MAX_MEMBERS - 1]])


def _members(tracestate: str) -> list[str]:
    """The list-members of a tracestate, without the optional white space around them."""
    return [m for m in (member.strip(" \t") for member in tracestate.split(",")) if m]


def _split_ot(members: list[str]) -> tuple[list[str], str | None]:
    """(the members other than `ot`, the first `ot` member's value or None)."""
    others: list[str] = []
    ot_value: str | None = None
    for member in members:
        key, equals, value = member.partition("=")
        if key.rstrip(" \t") == "ot" and equals:
            if ot_value is None:
                ot_value = value.lstrip(" \t")
            continue  # a second `ot` is invalid (keys are unique): the first one counts
        others.append(member)
    return others, ot_value
