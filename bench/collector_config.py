"""The OpenTelemetry Collector config the benchmark runs: rules/default.yaml as tail_sampling.

The policies, and how each maps refinery_py's rules (bench/rules/collector-equivalent.yaml is the
same four policies written as Refinery rules, for an exact comparison):

| refinery_py rule                       | tail_sampling policy                                    |
|----------------------------------------|---------------------------------------------------------|
| keep errors (`error` exists)           | `status_code: [ERROR]` (any span)                       |
| keep flagged (`app.flagged = true`)    | `boolean_attribute: app.flagged = true` (any span)      |
| drop health checks (route regex)       | `drop` ⊃ `string_attribute: http.route`, same regex     |
| sample the rest: goal rate 10 (*)      | `probabilistic: 10%` (FNV hash of the trace ID)         |

(*) rules/default.yaml samples the rest with an EMADynamicSampler (goal rate 10 per customer and
route); the equivalent rules file keeps a plain 1 in 10 by trace-ID hash, like this policy.

Differences that do not matter on this load: a `drop` wins over every keep in the Collector,
while Refinery's first matching rule wins (bench traffic never has an erroring or flagged health
check); rules/default.yaml also keeps 5xx roots, which in this traffic always carry an ERROR
span; the drop matches `http.route` on any span, Refinery's on the root (health checks here are
single-span traces).

Timing: refinery_py decides `send_delay` after the root span arrives, or `trace_timeout` after
the first span without a root. The pinned tail_sampling has the same pair:
`decision_wait_after_root_received` = send_delay and `decision_wait` = trace_timeout, both in
whole seconds (its timer ticks once a second, so its decisions land up to a second later).
`num_traces` bounds the traces it remembers (decided ones stay, without their spans, until
evicted): 200 000 is 20 s of this traffic at 10 k traces/s, well past decision_wait, so nothing
is evicted undecided at any load this machine sustains; if it were, it would show as missing
kept traces and in `otelcol_processor_tail_sampling_sampling_trace_dropped_too_early`.
The batch processor after tail_sampling is the Collector's documented pipeline (refinery_py
batches its exports too).
"""

from __future__ import annotations

import math
from typing import Any

HEALTH_ROUTE_REGEX = r"^/(health|healthz|livez|readyz|ping)($|/|-|\?)"


def policies() -> list[dict[str, Any]]:
    return [
        {"name": "keep-errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {
            "name": "keep-flagged",
            "type": "boolean_attribute",
            "boolean_attribute": {"key": "app.flagged", "value": True},
        },
        {
            "name": "drop-health-checks",
            "type": "drop",
            "drop": {
                "drop_sub_policy": [
                    {
                        "name": "health-route",
                        "type": "string_attribute",
                        "string_attribute": {
                            "key": "http.route",
                            "values": [HEALTH_ROUTE_REGEX],
                            "enabled_regex_matching": True,
                        },
                    }
                ]
            },
        },
        {
            "name": "sample-the-rest",
            "type": "probabilistic",
            "probabilistic": {"sampling_percentage": 10},
        },
    ]


def collector_config(
    *,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    sink_port: int,
    send_delay: float,
    trace_timeout: float,
    num_traces: int = 200_000,
    compression: str = "none",
) -> dict[str, Any]:
    """The whole Collector config, as a mapping to dump as YAML."""
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {
                        "endpoint": f"127.0.0.1:{grpc_port}",
                        "max_recv_msg_size_mib": 16,
                    },
                    "http": {"endpoint": f"127.0.0.1:{http_port}"},
                }
            }
        },
        "processors": {
            "tail_sampling": {
                "decision_wait": f"{max(1, math.ceil(trace_timeout))}s",
                "decision_wait_after_root_received": f"{max(1, round(send_delay))}s",
                "num_traces": num_traces,
                "expected_new_traces_per_sec": 10_000,
                "policies": policies(),
            },
            "batch": {},
        },
        "exporters": {
            "otlp_grpc": {
                "endpoint": f"127.0.0.1:{sink_port}",
                "tls": {"insecure": True},
                "compression": compression,
            }
        },
        "service": {
            "telemetry": {
                "logs": {"level": "warn"},
                "metrics": {
                    "level": "normal",
                    "readers": [
                        {
                            "pull": {
                                "exporter": {
                                    "prometheus": {"host": "127.0.0.1", "port": metrics_port}
                                }
                            }
                        }
                    ],
                },
            },
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["tail_sampling", "batch"],
                    "exporters": ["otlp_grpc"],
                }
            },
        },
    }
