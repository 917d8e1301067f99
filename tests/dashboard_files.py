"""What dashboards/ holds, read the way Grafana and Prometheus read it.

Every Grafana dashboard (`dashboards/*.json`) and the alerting rules (`dashboards/alerts.yaml`)
are found here, so a panel or an alert added to those files is checked by the tests without
touching them: the unit tests check their shape, the end-to-end test evaluates every expression
against a real Prometheus scraping a real node.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))
ALERTS = REPO / "dashboards" / "alerts.yaml"

RATE_WINDOW = "2m"
"""What `$__rate_interval` and `$__range` stand for in the tests: longer than the whole test run,
so a counter that moved at any time during it has a rate."""

GRAFANA_VARIABLES = {
    "__rate_interval": RATE_WINDOW,
    "__interval": "15s",
    "__range": RATE_WINDOW,
    "instance": ".*",
    "worker": ".*",
}
"""The value of every variable a panel may use, as Grafana substitutes it with "All" selected."""

_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
_METRIC = re.compile(r"\brefinery_[a-z0-9_]+")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    def where(self) -> str:
        return f"{self.dashboard}: panel {self.panel!r}, query {self.ref_id}"


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included; rows themselves too."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries() -> list[PanelQuery]:
    return [
        PanelQuery(path.name, panel["title"], target["refId"], target["expr"])
        for path in DASHBOARDS
        for panel in panels(load(path))
        for target in panel.get("targets", [])
    ]


def variable_queries() -> list[tuple[str, str]]:
    """(variable name, its `label_values(...)` query) of every query variable."""
    return [
        (variable["name"], variable["query"]["query"])
        for path in DASHBOARDS
        for variable in load(path)["templating"]["list"]
        if variable["type"] == "query"
    ]


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def concrete(expr: str) -> str:
    """`expr` with Grafana's variables substituted; an unknown variable is an error."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GRAFANA_VARIABLES:
            raise ValueError(f"unknown dashboard variable ${name} in {expr}")
        return GRAFANA_VARIABLES[name]

    return _VARIABLE.sub(value, expr)


def metric_names(expr: str) -> set[str]:
    """The refinery_* series an expression reads (every metric refinery_py exports has the
    prefix, so a name outside it is not ours to check)."""
    return set(_METRIC.findall(expr))
