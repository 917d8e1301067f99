"""Read a Prometheus text endpoint (refinery_py's /metrics, the Collector's own telemetry).

Only what the benchmark needs: the sum of a metric's samples, optionally restricted to samples
whose label text contains a fragment such as `decision="kept"`.
"""

from __future__ import annotations

import urllib.request


def fetch(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text: str = response.read().decode()
        return text


def total(text: str, name: str, label: str = "") -> float | None:
    """Sum of the samples of `name` (exact family sample name); None if there is none."""
    found = False
    value = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        rest = line[len(name) :]
        if not rest.startswith(("{", " ")) or label not in rest:
            continue
        try:
            value += float(line.rsplit(" ", 1)[1])
        except ValueError:
            continue
        found = True
    return value if found else None


def try_total(url: str, name: str, label: str = "") -> float | None:
    """`total` of a freshly fetched page; None when the endpoint does not answer."""
    try:
        return total(fetch(url), name, label)
    except OSError:
        return None
