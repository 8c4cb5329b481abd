"""docker-compose.yml: valid, and secure by default (only Flower published, secrets required)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", "worker", "beat", "flower"}
    commands = {name: " ".join(svc["command"]) for name, svc in compose["services"].items()}
    assert "celery -A car_dream worker" in commands["worker"]
    assert "celery -A car_dream beat" in commands["beat"]
    assert "celery -A car_dream flower" in commands["flower"]


def test_only_flower_is_published(compose: dict[str, Any]) -> None:
    published = {name for name, svc in compose["services"].items() if svc.get("ports")}
    assert published == {"flower"}


def test_secrets_come_from_the_environment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "requirepass" in " ".join(services["redis"]["command"])
    assert "${REDIS_PASSWORD" in services["worker"]["environment"]["CAR_DREAM_REDIS_URL"]
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH")
    assert "FLOWER_UNAUTHENTICATED_API" not in services["flower"]["environment"]


def docker_compose_config(**secrets: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_PASSWORD", "FLOWER_BASIC_AUTH")}
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
    result = docker_compose_config(REDIS_PASSWORD="0123abcd", FLOWER_BASIC_AUTH="admin:pw")
    assert result.returncode == 0, result.stderr


@pytest.mark.integration
@needs_compose
def test_docker_compose_config_fails_without_the_secrets() -> None:
    result = docker_compose_config()
    assert result.returncode != 0
    assert "set REDIS_PASSWORD" in result.stderr
    result = docker_compose_config(REDIS_PASSWORD="0123abcd")
    assert result.returncode != 0
    assert "set FLOWER_BASIC_AUTH" in result.stderr
