"""`refinery-py query traces | trace | summary | customers`: the query API from a terminal.

Talks to a running node (`--api`, default http://127.0.0.1:8088, bearer token from `--token` or
REFINERY_API_TOKEN; for an https:// API, `--cacert` names the CA to check it against and `--cert`
and `--key` a client certificate) or reads a store file directly (`--store FILE`). Prints
tables, or the API's JSON document with `--json`. Exit status 0 on an answer, 1 when the
question failed.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from refinery_py.api.query_sources import Source

DEFAULT_API = "http://127.0.0.1:8088"
TOKEN_ENV = "REFINERY_API_TOKEN"


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api", default=DEFAULT_API, metavar="URL", help=f"the node's API (default {DEFAULT_API})"
    )
    common.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"bearer token for the API (default: ${TOKEN_ENV})",
    )
    common.add_argument(
        "--cacert", metavar="FILE", help="PEM CA certificates to check an https:// API against"
    )
    common.add_argument(
        "--cert", metavar="FILE", help="PEM client certificate for an API that requires one"
    )
    common.add_argument("--key", metavar="FILE", help="PEM private key of --cert")
    common.add_argument(
        "--store", metavar="FILE", help="read this store file directly instead of asking a node"
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON document")
    return common


def _window_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", metavar="TIME", help="from this time: RFC 3339, or a duration ago (15m, 1h)"
    )
    parser.add_argument("--until", metavar="TIME", help="before this time (same forms)")


def add_query_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `query` and its subcommands on the top-level command parser."""
    common = _common_options()
    query = commands.add_parser(
        "query",
        help="query kept traces per customer (a running node's API, or a store file)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subcommands = query.add_subparsers(dest="query_command", required=True, metavar="WHAT")

    traces = subcommands.add_parser(
        "traces", parents=[common], help="list stored traces, newest first"
    )
    traces.add_argument("--customer", help='only this customer\'s traces ("" for none)')
    traces.add_argument("--service", help="only traces whose root is in this service")
    traces.add_argument("--name", help="only traces whose root has this name or route")
    traces.add_argument("--errors", action="store_true", help="only traces with an error")
    traces.add_argument(
        "--min-duration", type=float, metavar="MS", help="only traces at least this long"
    )
    _window_options(traces)
    traces.add_argument("--limit", type=int, help="traces per page (default 50, at most 1000)")
    traces.add_argument("--cursor", help="continue after the previous page (its next_cursor)")
    traces.set_defaults(run=run_query, ask="traces")

    trace = subcommands.add_parser(
        "trace", parents=[common], help="one trace: its decision and spans"
    )
    trace.add_argument("trace_id", metavar="TRACE_ID", help="32 hex digits")
    trace.set_defaults(run=run_query, ask="trace")

    summary = subcommands.add_parser(
        "summary", parents=[common], help="a customer's reweighted totals, latency, top routes"
    )
    summary.add_argument("customer", metavar="CUSTOMER", help='the customer ("" for none)')
    _window_options(summary)
    summary.set_defaults(run=run_query, ask="summary")

    customers = subcommands.add_parser(
        "customers", parents=[common], help="customers by estimated trace volume"
    )
    _window_options(customers)
    customers.add_argument("--limit", type=int, help="how many (default 100)")
    customers.set_defaults(run=run_query, ask="customers")


def _pairs(args: argparse.Namespace, names: tuple[str, ...]) -> list[tuple[str, str]]:
    """The API parameters among `names` that were given on the command line."""
    pairs = []
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            pairs.append((name, str(value)))
    return pairs


def _trace_params(args: argparse.Namespace) -> list[tuple[str, str]]:
    params = _pairs(args, ("customer", "service", "name"))
    if args.errors:
        params.append(("error", "true"))
    if args.min_duration is not None:
        params.append(("min_duration_ms", repr(args.min_duration)))
    return params + _pairs(args, ("since", "until", "limit", "cursor"))


def _ask(source: Source, args: argparse.Namespace) -> dict[str, Any]:
    if args.ask == "traces":
        return source.traces(_trace_params(args))
    if args.ask == "trace":
        return source.trace(args.trace_id)
    if args.ask == "summary":
        return source.summary(args.customer, _pairs(args, ("since", "until")))
    return source.customers(_pairs(args, ("since", "until", "limit")))


def run_query(args: argparse.Namespace) -> int:
    """Run a parsed `refinery-py query ...` command; the exit status."""
    # Imported here so that registering the command costs the other commands nothing.
    from refinery_py.api import query_tables  # noqa: PLC0415
    from refinery_py.api.query_sources import (  # noqa: PLC0415
        ApiSource,
        QueryFailed,
        StoreFileSource,
    )

    if (args.cert is None) != (args.key is None):
        print("error: --cert and --key go together", file=sys.stderr)
        return 1
    file_source = StoreFileSource(args.store) if args.store else None
    try:
        source: Source = file_source or ApiSource(
            args.api, args.token, api_tls(args.cacert, args.cert, args.key)
        )
    except (OSError, ssl.SSLError) as exc:
        print(f"error: cannot use the TLS files: {exc}", file=sys.stderr)
        return 1
    try:
        document = _ask(source, args)
    except QueryFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if file_source is not None:
            file_source.close()
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        render = {
            "traces": query_tables.render_traces,
            "trace": query_tables.render_trace,
            "summary": query_tables.render_summary,
            "customers": query_tables.render_customers,
        }[args.ask]
        print(render(document))
    return 0


def api_tls(cacert: str | None, cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The client context for an https:// API: the system's CAs unless `cacert` names others,
    and a client certificate if given; None when nothing was asked for."""
    if cacert is None and cert is None:
        return None
    context = ssl.create_default_context(cafile=cacert)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context
