"""dashboards/: the Grafana JSON has the shape Grafana imports, the alerts are documented.

What the expressions return is checked against a running node in tests/e2e/test_dashboards.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.dashboard_files import (
    DASHBOARDS,
    REPO,
    alert_rules,
    concrete,
    load,
    panel_queries,
    panels,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_there_is_a_dashboard_and_alerts() -> None:
    assert DASHBOARDS, "dashboards/*.json"
    assert panel_queries()
    assert alert_rules()


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_has_the_shape_grafana_imports(path: Any) -> None:
    dashboard = load(path)
    assert dashboard["title"] and dashboard["uid"]
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "worker"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["query"]["query"].startswith("label_values(")
        assert variable["includeAll"] and variable["allValue"] == ".*"
    ids: set[int] = set()
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        title = panel["title"]
        assert panel["id"] not in ids, f"duplicate panel id {panel['id']} ({title})"
        ids.add(panel["id"])
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, title
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{title!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = title
        if panel["type"] == "row":
            continue
        assert panel.get("description"), f"{title!r} says what it shows"
        assert panel["datasource"] == DATASOURCE, title
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids and len(set(ref_ids)) == len(ref_ids), title
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, title
            concrete(target["expr"])  # every variable it uses is defined


def test_every_alert_has_a_summary_a_runbook_and_a_readme_entry() -> None:
    readme = (REPO / "README.md").read_text()
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["runbook"] == f"README.md, Alerts: {name}"
        rows = [line for line in readme.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, f"README.md's Alerts table has no row for {name}"
        cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
        assert len(cells) == 4 and all(cells), f"{name}: fires when, severity and runbook"
