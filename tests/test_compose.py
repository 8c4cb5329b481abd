"""docker-compose.yml: valid, and secure by default (only Flower and Grafana published,
secrets required); the metrics services wired to the files under deploy/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "redis",
        "worker",
        "beat",
        "flower",
        "exporter",
        "prometheus",
        "grafana",
    }
    commands = {n: " ".join(svc.get("command", [])) for n, svc in compose["services"].items()}
    assert "celery -A car_dream worker" in commands["worker"]
    assert "celery -A car_dream beat" in commands["beat"]
    assert "celery -A car_dream flower" in commands["flower"]
    assert commands["exporter"] == "car-dream exporter --address 0.0.0.0 --port 9808"


def test_only_flower_and_grafana_are_published(compose: dict[str, Any]) -> None:
    published = {name for name, svc in compose["services"].items() if svc.get("ports")}
    assert published == {"flower", "grafana"}


def test_secrets_come_from_the_environment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "requirepass" in " ".join(services["redis"]["command"])
    assert "${REDIS_PASSWORD" in services["worker"]["environment"]["CAR_DREAM_REDIS_URL"]
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH")
    assert "FLOWER_UNAUTHENTICATED_API" not in services["flower"]["environment"]
    grafana = services["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${GRAFANA_ADMIN_PASSWORD"
    )
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_redis_keeps_an_append_only_file_and_never_evicts(compose: dict[str, Any]) -> None:
    config = " ".join(compose["services"]["redis"]["command"])
    for directive in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
        assert directive in config


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> file under the repository, of the service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            out[target] = ROOT / source
    return out


def test_prometheus_scrapes_the_exporter_and_loads_the_rules(compose: dict[str, Any]) -> None:
    files = mounts(compose["services"]["prometheus"])
    assert all(path.is_file() for path in files.values()), files
    config = yaml.safe_load(files["/etc/prometheus/prometheus.yml"].read_text())
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["exporter:9808"]
    rules = [Path("/etc/prometheus") / r for r in config["rule_files"]]
    assert [str(r) for r in rules] == ["/etc/prometheus/alerts.yml"]
    assert files["/etc/prometheus/alerts.yml"] == ROOT / "deploy/prometheus/alerts.yml"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(compose: dict[str, Any]) -> None:
    files = mounts(compose["services"]["grafana"])
    assert all(path.exists() for path in files.values()), files
    provisioning = files["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    providers = yaml.safe_load((provisioning / "dashboards/car-dream.yml").read_text())
    folder = providers["providers"][0]["options"]["path"]
    dashboard = files[f"{folder}/car-dream.json"]
    assert dashboard == ROOT / "deploy/grafana/car-dream.json"
    variables = {v["name"]: v for v in json.loads(dashboard.read_text())["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == source["uid"]


ALL_SECRETS = {
    "REDIS_PASSWORD": "0123abcd",
    "FLOWER_BASIC_AUTH": "admin:pw",
    "GRAFANA_ADMIN_PASSWORD": "0123abcd",
}
SECRETS = tuple(ALL_SECRETS)


def docker_compose_config(**secrets: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, **secrets},
    )


needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose not installed"
)


@pytest.mark.integration  # runs docker-compose
@needs_compose
def test_docker_compose_config_validates() -> None:
    # .ci/run installs Debian's docker-compose, which validates without a Docker engine.
    result = docker_compose_config(**ALL_SECRETS)
    assert result.returncode == 0, result.stderr


@pytest.mark.integration
@needs_compose
def test_docker_compose_config_fails_without_the_secrets() -> None:
    for missing in SECRETS:  # each one alone stops it, naming itself
        given = {k: v for k, v in ALL_SECRETS.items() if k != missing}
        result = docker_compose_config(**given)
        assert result.returncode != 0
        assert f"set {missing}" in result.stderr
