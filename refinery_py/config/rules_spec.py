"""The rules file (Honeycomb Refinery's v2 format) as validated, frozen data.

`config.rules` turns YAML into these objects, reporting every problem with its line; `decide/`
builds samplers from them. Keys, defaults and limits follow Refinery's documentation; where
refinery_py goes further (fairness options), the docs say so.
"""

# option() returns a dataclasses.field(), which ruff cannot see through: RUF009 is a false alarm.

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from refinery_py.config.go_regex import GoRegex
from refinery_py.config.schema_fields import option
from refinery_py.config.units import Seconds

OPERATORS = (
    "=",
    "!=",
    ">",
    "<",
    ">=",
    "<=",
    "starts-with",
    "contains",
    "does-not-contain",
    "exists",
    "not-exists",
    "has-root-span",
    "matches",
    "in",
    "not-in",
)
"""Every condition operator Refinery defines, in its documentation's order."""

DATATYPES = ("string", "int", "float", "bool")
ROOT_PREFIX = "root."
NUM_DESCENDANTS = "?.NUM_DESCENDANTS"
DEFAULT_TARGET = "__default__"


# Options several sampler types share, declared once: `option(**_NAME)`.
_MAX_KEYS: dict[str, Any] = {
    "key": "MaxKeys",
    "doc": (
        "Keys tracked exactly per window; 0 means 500. The heaviest are tracked; rarer keys "
        "are planned by size class from their own small counts, and each still keeps its first "
        "trace per window, up to 20 × MaxKeys distinct keys."
    ),
    "default": 0,
    "minimum": 0,
}
_USE_TRACE_LENGTH: dict[str, Any] = {
    "key": "UseTraceLength",
    "doc": ("Append the trace's span count to the key."),
    "default": False,
}
_GOAL_THROUGHPUT: dict[str, Any] = {
    "key": "GoalThroughputPerSec",
    "doc": ("Kept spans per second to aim for (per node unless UseClusterSize)."),
    "default": 100,
    "minimum": 1,
}
_USE_CLUSTER_SIZE: dict[str, Any] = {
    "key": "UseClusterSize",
    "doc": ("Treat the goal as cluster-wide and divide it by the number of nodes."),
    "default": False,
}
_PER_KEY_MAX_SHARE: dict[str, Any] = {
    "key": "PerKeyMaxShare",
    "doc": (
        "refinery_py only. The largest share (0 < share ≤ 1) of the kept-span budget any one key "
        "may take, so a noisy customer cannot crowd the others out; key the sampler on the "
        "customer field to make it per customer. 1 (the default) sets no cap. When the caps "
        "leave budget that traffic could fill unused, the goal is reported unreachable."
    ),
    "default": 1.0,
    "exclusive_minimum": 0,
    "maximum": 1,
}
_PER_KEY_MIN_PER_SEC: dict[str, Any] = {
    "key": "PerKeyMinPerSec",
    "doc": (
        "refinery_py only. Kept spans per second every active key is allotted at least (all its "
        "spans if it sends fewer) before the rest of the goal is shared out; per cluster under "
        "UseClusterSize, like the goal. 0 (the default) sets no floor beyond one trace per key "
        "per window. When keys × this exceeds the goal, the floors are scaled down to fit and "
        "the goal is reported unreachable."
    ),
    "default": 0.0,
    "minimum": 0,
}
_ADJUSTMENT_INTERVAL: dict[str, Any] = {
    "key": "AdjustmentInterval",
    "doc": ("How often the moving average is updated and new rates computed."),
    "default": Seconds(15.0),
    "exclusive_minimum": 0,
}
_WEIGHT: dict[str, Any] = {
    "key": "Weight",
    "doc": ("Weight of the newest interval in the moving average (0 < Weight < 1)."),
    "default": 0.5,
    "exclusive_minimum": 0,
    "maximum": 1,
}
_AGE_OUT_VALUE: dict[str, Any] = {
    "key": "AgeOutValue",
    "doc": ("A key whose moving average of spans falls below this is forgotten; 0 means Weight."),
    "default": 0.5,
    "minimum": 0,
    "maximum": 1,
}
_BURST_MULTIPLE: dict[str, Any] = {
    "key": "BurstMultiple",
    "doc": (
        "Recompute early when an interval's span count reaches this multiple of the summed "
        "averages; a negative value disables burst detection, 0 means 2."
    ),
    "default": 2.0,
}
_BURST_DETECTION_DELAY: dict[str, Any] = {
    "key": "BurstDetectionDelay",
    "doc": ("Intervals to wait after start-up before burst detection begins; 0 means 3."),
    "default": 3,
    "minimum": 0,
}
_OPTIONAL_FIELD_LIST: dict[str, Any] = {
    "key": "FieldList",
    "doc": ("Fields whose values form the sampler key."),
    "default": (),
}
_REQUIRED_FIELD_LIST: dict[str, Any] = {
    "key": "FieldList",
    "doc": ("Fields whose values form the sampler key."),
    "required": True,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionSpec:
    """One condition of a rule. `fields` is `Field` or `Fields` (first present wins)."""

    fields: tuple[str, ...] = option(
        "Field",
        "The field to test. `root.` looks at the root span only; `?.NUM_DESCENDANTS` is the "
        "number of spans in the trace. `Fields` (a list) tests the first of them that is present.",
        default=(),
        aliases=("Fields",),
        shown_type="string (`Fields`: list of string)",
    )
    operator: str = option(
        "Operator", "How to compare the field with `Value`.", required=True, choices=OPERATORS
    )
    value: object = option(
        "Value",
        "What to compare with: a scalar, or a list for `in`/`not-in`; `true`/`false` for "
        "`has-root-span`; a regular expression for `matches`.",
        default=None,
    )
    datatype: str | None = option(
        "Datatype",
        "Convert both sides to this type before comparing (`string`, `int`, `float`, `bool`). "
        "Without it, numbers compare with numbers across int/float and other types must match.",
        default=None,
        choices=DATATYPES,
    )
    line: int = 0
    pattern: GoRegex | None = None
    """The compiled regular expression of a `matches` condition."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeterministicSpec:
    """Keep 1 in `SampleRate` traces, chosen by a hash of the trace ID."""

    sample_rate: int = option(
        "SampleRate",
        "Keep one trace in this many, chosen by a hash of the trace ID so every node agrees. "
        "1 keeps everything.",
        required=True,
        minimum=1,
    )
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DynamicSpec:
    """Refinery's DynamicSampler: per-key rates averaging `SampleRate` over `ClearFrequency`."""

    sample_rate: int = option(
        "SampleRate",
        "The average sample rate to aim for across all keys.",
        required=True,
        minimum=1,
    )
    clear_frequency: Seconds = option(
        "ClearFrequency",
        "How often the per-key counts are reset and new rates computed.",
        default=Seconds(30.0),
        exclusive_minimum=0,
    )
    field_list: tuple[str, ...] = option(
        "FieldList",
        "Fields whose values form the sampler key (values gathered across all spans; `root.` "
        "fields from the root span only).",
        required=True,
    )
    max_keys: int = option(**_MAX_KEYS)
    use_trace_length: bool = option(**_USE_TRACE_LENGTH)
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class EMADynamicSpec:
    """Refinery's EMADynamicSampler: per-key rates from an exponential moving average of counts."""

    goal_sample_rate: int = option(
        "GoalSampleRate", "The average sample rate to aim for.", default=10, minimum=1
    )
    adjustment_interval: Seconds = option(**_ADJUSTMENT_INTERVAL)
    weight: float = option(**_WEIGHT)
    age_out_value: float = option(**_AGE_OUT_VALUE)
    burst_multiple: float = option(**_BURST_MULTIPLE)
    burst_detection_delay: int = option(**_BURST_DETECTION_DELAY)
    field_list: tuple[str, ...] = option(**_REQUIRED_FIELD_LIST)
    max_keys: int = option(**_MAX_KEYS)
    use_trace_length: bool = option(**_USE_TRACE_LENGTH)
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class EMAThroughputSpec:
    """Refinery's EMAThroughputSampler: rates that keep about `GoalThroughputPerSec` spans/s."""

    goal_throughput_per_sec: int = option(**_GOAL_THROUGHPUT)
    use_cluster_size: bool = option(**_USE_CLUSTER_SIZE)
    initial_sample_rate: int = option(
        "InitialSampleRate",
        "The rate used until the first adjustment interval has passed.",
        default=10,
        minimum=1,
    )
    adjustment_interval: Seconds = option(**_ADJUSTMENT_INTERVAL)
    weight: float = option(**_WEIGHT)
    age_out_value: float = option(**_AGE_OUT_VALUE)
    burst_multiple: float = option(**_BURST_MULTIPLE)
    burst_detection_delay: int = option(**_BURST_DETECTION_DELAY)
    per_key_max_share: float = option(**_PER_KEY_MAX_SHARE)
    per_key_min_per_sec: float = option(**_PER_KEY_MIN_PER_SEC)
    field_list: tuple[str, ...] = option(**_OPTIONAL_FIELD_LIST)
    max_keys: int = option(**_MAX_KEYS)
    use_trace_length: bool = option(**_USE_TRACE_LENGTH)
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowedThroughputSpec:
    """Refinery's WindowedThroughputSampler: throughput goal over a sliding lookback window."""

    update_frequency: Seconds = option(
        "UpdateFrequency",
        "How often rates are recomputed.",
        default=Seconds(1.0),
        exclusive_minimum=0,
    )
    lookback_frequency: Seconds = option(
        "LookbackFrequency",
        "How far back the window looks when computing rates; 0 means 30 × UpdateFrequency. "
        "Rounded down to a whole multiple of UpdateFrequency.",
        default=Seconds(0.0),
        minimum=0,
    )
    goal_throughput_per_sec: int = option(**_GOAL_THROUGHPUT)
    use_cluster_size: bool = option(**_USE_CLUSTER_SIZE)
    per_key_max_share: float = option(**_PER_KEY_MAX_SHARE)
    per_key_min_per_sec: float = option(**_PER_KEY_MIN_PER_SEC)
    field_list: tuple[str, ...] = option(**_OPTIONAL_FIELD_LIST)
    max_keys: int = option(**_MAX_KEYS)
    use_trace_length: bool = option(**_USE_TRACE_LENGTH)
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TotalThroughputSpec:
    """Refinery's TotalThroughputSampler: a fixed throughput budget shared out per key."""

    goal_throughput_per_sec: int = option(**_GOAL_THROUGHPUT)
    use_cluster_size: bool = option(**_USE_CLUSTER_SIZE)
    clear_frequency: Seconds = option(
        "ClearFrequency",
        "How often counts are reset and new rates computed.",
        default=Seconds(30.0),
        exclusive_minimum=0,
    )
    per_key_max_share: float = option(**_PER_KEY_MAX_SHARE)
    per_key_min_per_sec: float = option(**_PER_KEY_MIN_PER_SEC)
    field_list: tuple[str, ...] = option(**_REQUIRED_FIELD_LIST)
    max_keys: int = option(**_MAX_KEYS)
    use_trace_length: bool = option(**_USE_TRACE_LENGTH)
    line: int = 0


DownstreamSpec = (
    DeterministicSpec
    | DynamicSpec
    | EMADynamicSpec
    | EMAThroughputSpec
    | WindowedThroughputSpec
    | TotalThroughputSpec
)
"""A sampler a rule can hand its matching traces to (anything but another rules sampler)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSpec:
    """One rule of a RulesBasedSampler; the first rule whose conditions all match decides."""

    name: str = option(
        "Name", "Shown in `meta.refinery.reason` as `rules/<scope>/<Name>`.", default=""
    )
    scope: str = option(
        "Scope",
        "`trace`: each condition may be met by a different span. `span`: one span must meet "
        "every condition.",
        default="trace",
        choices=("trace", "span"),
    )
    conditions: tuple[ConditionSpec, ...] = option(
        "Conditions", "All must match; a rule without conditions always matches.", default=()
    )
    drop: bool = option("Drop", "Drop matching traces.", default=False)
    sample_rate: int = option(
        "SampleRate",
        "Keep 1 in this many matching traces (by trace ID hash). Without SampleRate, Drop or "
        "Sampler, a matching trace is kept at rate 1.",
        default=1,
        minimum=1,
    )
    sampler: DownstreamSpec | None = option(
        "Sampler", "Hand matching traces to this sampler instead of a fixed rate.", default=None
    )
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesBasedSpec:
    """Refinery's RulesBasedSampler: an ordered list of rules."""

    rules: tuple[RuleSpec, ...] = option(
        "Rules", "Evaluated in order; traces matching no rule are kept at rate 1.", default=()
    )
    check_nested_fields: bool = option(
        "CheckNestedFields",
        "Also look for dotted field names inside JSON-valued attributes.",
        default=False,
    )
    line: int = 0


SamplerSpec = DownstreamSpec | RulesBasedSpec
"""Any sampler a target can name."""

SAMPLER_TYPES: dict[str, type] = {
    "DeterministicSampler": DeterministicSpec,
    "RulesBasedSampler": RulesBasedSpec,
    "DynamicSampler": DynamicSpec,
    "EMADynamicSampler": EMADynamicSpec,
    "EMAThroughputSampler": EMAThroughputSpec,
    "WindowedThroughputSampler": WindowedThroughputSpec,
    "TotalThroughputSampler": TotalThroughputSpec,
}
"""Sampler type names as written in the rules file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesSpec:
    """A whole rules file: one sampler per target, `__default__` always present."""

    rules_version: int
    samplers: dict[str, SamplerSpec]
    source: str = ""
    """The file the rules came from (for messages and `GET /api/v1/rules`)."""
    digest: str = ""
    """SHA-256 of the file's bytes, to tell which rules are active."""
    text: str = field(default="", compare=False, repr=False)
    """The rules as written (what a cluster member shares with the others)."""
