"""Send a few thousand realistic traces to a running refinery_py, to look at what it keeps.

    .venv/bin/python -m bench.demo_traffic [--endpoint http://127.0.0.1:4318/v1/traces]
                                           [--traces 2000] [--errors 0.05]

The traces are bench/traffic.py's (customers, routes, 8-40 attribute-rich spans, health checks,
flagged transactions), timestamped now, with more errors than the benchmark's 1% so that the
error rule has something to keep. Posted as OTLP/HTTP protobuf; refused requests (429) are
retried after their Retry-After.
"""

from __future__ import annotations

import argparse
import time
import urllib.error
import urllib.request

from bench.traffic import TrafficShape, generate_requests


def post(endpoint: str, body: bytes) -> None:
    for _ in range(20):
        request = urllib.request.Request(
            endpoint, body, {"Content-Type": "application/x-protobuf"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                return
        except urllib.error.HTTPError as error:
            if error.code not in (429, 503):
                raise
            time.sleep(float(error.headers.get("Retry-After") or 1))
    raise RuntimeError(f"{endpoint} kept refusing the request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", default="http://127.0.0.1:4318/v1/traces")
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--errors", type=float, default=0.05, help="fraction of error traces")
    args = parser.parse_args()
    shape = TrafficShape(error_fraction=args.errors, spans_per_request=256, seed=int(time.time()))
    requests = 0
    for body in generate_requests(args.traces, shape, start_ns=time.time_ns()):
        post(args.endpoint, body)
        requests += 1
    print(f"sent {args.traces} traces in {requests} requests to {args.endpoint}")


if __name__ == "__main__":
    main()
