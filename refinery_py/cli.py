"""The command line: `refinery-py serve | config check | rules check | query`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

from refinery_py import __version__, compiled
from refinery_py.api.query_cli import add_query_command
from refinery_py.config.problems import ConfigError, Problem
from refinery_py.config.rules import check_rules_file
from refinery_py.config.settings import check_config_file, load_settings


def _serve(args: argparse.Namespace) -> int:
    from refinery_py import app  # noqa: PLC0415 - keep `rules check` free of server imports
    from refinery_py.telemetry.logs import configure_logging  # noqa: PLC0415

    try:
        settings = load_settings(args.config)
        if args.record is not None:
            settings = replace(settings, record=replace(settings.record, dir=args.record))
        configure_logging(settings.logging.level, settings.logging.format)
        logging.getLogger("refinery_py").info("per-span code: %s", compiled.status)
        rules = app.resolve_rules(settings, args.rules)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    workers = args.workers if args.workers is not None else os.cpu_count() or 1
    if workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 1
    app.tune_allocator()
    try:
        import uvloop  # noqa: PLC0415

        return uvloop.run(app.serve(settings, rules, workers))
    except ImportError:
        return asyncio.run(app.serve(settings, rules, workers))


def _report(problems: list[Problem], strict: bool) -> int:
    for problem in problems:
        print(problem)
    failing = [p for p in problems if p.is_error or strict]
    if not problems:
        print("ok")
    return 1 if failing else 0


def _config_check(args: argparse.Namespace) -> int:
    return _report(check_config_file(args.file), args.strict)


def _rules_check(args: argparse.Namespace) -> int:
    return _report(check_rules_file(args.file), args.strict)


def _rules_test(args: argparse.Namespace) -> int:
    from refinery_py.replay.command import run_rules_test  # noqa: PLC0415

    return run_rules_test(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refinery-py",
        description="Tail-sampling pipeline for OpenTelemetry traces, driven by Refinery rules.",
    )
    parser.add_argument("--version", action="version", version=f"refinery-py {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the pipeline")
    serve.add_argument("--config", metavar="FILE", help="config file (default: built-in defaults)")
    serve.add_argument("--rules", metavar="FILE", help="rules file (overrides rules_file)")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes, each owning a share of the traces (default: number of CPUs)",
    )
    serve.add_argument(
        "--record",
        metavar="DIR",
        help="record accepted traffic as OTLP JSON lines in DIR (overrides record.dir)",
    )
    serve.set_defaults(run=_serve)

    config = commands.add_parser("config", help="work with config files")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_check = config_commands.add_parser("check", help="validate a config file")
    config_check.add_argument("file")
    config_check.add_argument("--strict", action="store_true", help="fail on warnings too")
    config_check.set_defaults(run=_config_check)

    rules = commands.add_parser("rules", help="work with rules files")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    rules_check = rules_commands.add_parser("check", help="validate a rules file")
    rules_check.add_argument("file")
    rules_check.add_argument("--strict", action="store_true", help="fail on warnings too")
    rules_check.set_defaults(run=_rules_check)
    rules_test = rules_commands.add_parser(
        "test",
        help="replay recorded traffic through rules and report what they keep",
        description="Replay recorded traces (OTLP JSON lines, or serialized protobuf requests) "
        "through a rules file, with the span timestamps as the clock, and print per rule and "
        "per customer what was seen and kept.",
    )
    rules_test.add_argument("--rules", required=True, metavar="FILE", help="rules file")
    rules_test.add_argument(
        "--config", metavar="FILE", help="config file (send_delay, trace_timeout, customers)"
    )
    rules_test.add_argument("--compare", metavar="OTHER_RULES", help="also replay these rules")
    rules_test.add_argument("--json", action="store_true", help="print one JSON document")
    rules_test.add_argument(
        "traces", nargs="+", metavar="TRACES", help="*.json/*.jsonl (OTLP JSON lines), *.pb"
    )
    rules_test.set_defaults(run=_rules_test)

    add_query_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result
