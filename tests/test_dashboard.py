"""deploy/grafana/car-dream.json: the dashboard's queries are PromQL on metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from .metrics_env import promtool, served

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "car-dream.json"
# What the variables stand for when a query is checked on its own.
VARIABLES = {"$exporter": "exporter:9808", "$namespace": ".*", "$window": "6h"}


def panels() -> list[dict[str, Any]]:
    data = json.loads(DASHBOARD.read_text())
    return [p for p in data["panels"] if p["type"] != "row"]


def queries(variables: dict[str, str] = VARIABLES) -> list[str]:
    out = []
    for panel in panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in variables.items():
                expr = expr.replace(name, value)
            out.append(expr)
    return out


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses rule expressions: each query becomes a recording rule.
    rules = [{"record": f"car_dream:panel_{i}", "expr": q} for i, q in enumerate(queries())]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in promtool("check", "rules", str(path))
    assert not any("$" in q for q in queries())  # every variable is one the dashboard defines


def test_queries_name_only_served_metrics_and_show_what_the_issue_asks() -> None:
    used = {m for q in queries() for m in re.findall(r"\bcar_dream_[a-z_]+", q)}
    assert used <= served(), used - served()
    for needed in (
        "car_dream_passes_total",
        "car_dream_pass_duration_seconds_bucket",
        "car_dream_step_duration_seconds_bucket",
        "car_dream_items_total",
        "car_dream_nodes",
        "car_dream_embedding_coverage_ratio",
    ):
        assert needed in used, needed


def test_variables_and_datasource() -> None:
    data = json.loads(DASHBOARD.read_text())
    names = {v["name"] for v in data["templating"]["list"]}
    assert {"datasource", "exporter", "namespace", "window"} <= names
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
