"""`refinery-py rules test`: load the rules and the traffic, replay, print the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from refinery_py.config.problems import ConfigError
from refinery_py.config.rules import load_rules
from refinery_py.config.settings import load_settings
from refinery_py.decide.engine import RulesEngine
from refinery_py.decide.sampler import UnsupportedSampler
from refinery_py.replay.report import (
    compare_document,
    render,
    render_compare,
    summary_document,
)
from refinery_py.replay.simulate import ReplayResult, ReplaySettings, replay
from refinery_py.replay.sources import SourceError, read_requests


def run_rules_test(args: argparse.Namespace) -> int:
    """Exit 0 after printing the report; 1 when the rules, config or traffic cannot be read."""
    try:
        settings = load_settings(args.config)
        replay_settings = ReplaySettings(
            send_delay=settings.traces.send_delay,
            trace_timeout=settings.traces.trace_timeout,
            span_limit=settings.traces.span_limit,
            customer_fields=settings.customer_fields,
        )
        requests = [body for path in args.traces for body in read_requests(Path(path))]
        first = _replay(args.rules, requests, replay_settings)
        second = _replay(args.compare, requests, replay_settings) if args.compare else None
    except (ConfigError, SourceError, UnsupportedSampler, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    if second is None:
        document = summary_document(first)
        text = render(document)
    else:
        document = compare_document(first, second)
        text = render_compare(document)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(document) + b"\n")
    else:
        print(text)
    return 0


def _replay(rules_path: str, requests: list[bytes], settings: ReplaySettings) -> ReplayResult:
    return replay(requests, RulesEngine(load_rules(rules_path)), settings)
