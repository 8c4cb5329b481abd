"""deploy/prometheus: the alert rules and the Prometheus config, checked by promtool."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .metrics_env import promtool, served, tool

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
METRIC_RE = re.compile(r"\bcar_dream_[a-z_]+")


def test_alert_rules_are_valid() -> None:
    out = promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert "SUCCESS: 6 rules found" in out


def test_alert_rules_fire_when_they_should_and_only_then() -> None:
    # The cases are in tests/prometheus/alerts_test.yml, next to the rules they test.
    out = promtool("test", "rules", "alerts_test.yml", cwd=ROOT / "tests" / "prometheus")
    assert "SUCCESS" in out


def test_prometheus_config_is_valid_and_loads_the_rules() -> None:
    out = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "1 rule files found" in out


def test_rules_name_only_metrics_the_exporter_serves() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    used = {m for rule in rules for m in METRIC_RE.findall(rule["expr"])}
    assert used and used <= served(), used - served()


def test_a_missing_tool_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install prometheus"):
        tool("car-dream-no-such-tool")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        tool("car-dream-no-such-tool")
