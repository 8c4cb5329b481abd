"""No silent eviction: a memory Redis whose maxmemory-policy may evict is refused by the
worker (unless CAR_DREAM_ALLOW_EVICTION=true), warned about by beat and the CLI, and
fails ``car-dream check``; a Redis that refuses CONFIG GET gets one warning."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis
from click.testing import CliRunner

from car_dream.celery_config import preflight
from car_dream.cli import cli
from car_dream.errors import ConfigError
from car_dream.eviction import UNKNOWN, check_eviction, eviction_policy

from .celery_env import fresh_app
from .servers import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MANAGED = "managed-" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def evicting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server with ``allkeys-lru`` and a user who may not run CONFIG, as on a
    managed Redis."""
    server = RedisServer(tmp_path_factory.mktemp("evicting"), ["--maxmemory-policy", "allkeys-lru"])
    server.start()
    server.client().execute_command(
        "ACL", "SETUSER", "managed", "on", f">{MANAGED}", "~*", "&*", "+@all", "-config"
    )
    yield server
    server.stop()


def managed_url(server: RedisServer) -> str:
    return f"redis://managed:{MANAGED}@127.0.0.1:{server.port}/0"


def test_the_policy_is_read_or_unknown(evicting: RedisServer) -> None:
    assert eviction_policy(evicting.client()) == "allkeys-lru"
    assert eviction_policy(redis.Redis.from_url(managed_url(evicting))) == UNKNOWN
    assert eviction_policy(fakeredis.FakeRedis()) == UNKNOWN  # no CONFIG at all


def test_an_evicting_policy_is_refused_naming_the_setting_and_the_fix(
    evicting: RedisServer,
) -> None:
    client = evicting.client()
    with pytest.raises(ConfigError) as err:
        check_eviction(client, "CAR_DREAM_MEMORY_URL", evicting.url, allow=False)
    message = str(err.value)
    assert message.startswith("CAR_DREAM_MEMORY_URL: ")
    assert "maxmemory-policy allkeys-lru" in message
    assert "CONFIG SET maxmemory-policy noeviction" in message
    assert "CAR_DREAM_ALLOW_EVICTION=true" in message
    allowed = check_eviction(client, "CAR_DREAM_MEMORY_URL", evicting.url, allow=True)
    assert allowed and "allowed by CAR_DREAM_ALLOW_EVICTION=true" in allowed
    warned = check_eviction(client, "X", evicting.url, allow=False, refuse=False)
    assert warned == message.replace("CAR_DREAM_MEMORY_URL", "X", 1)


def test_worker_preflight_refuses_beat_warns_and_allowed_warns(
    evicting: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = fresh_app(monkeypatch, evicting.url)
    with pytest.raises(SystemExit) as stop:
        preflight(app)
    assert "CAR_DREAM_REDIS_URL" in str(stop.value) and "allkeys-lru" in str(stop.value)
    caplog.set_level(logging.WARNING)
    preflight(app, refuse_eviction=False)  # beat
    assert "maxmemory-policy allkeys-lru" in caplog.text
    caplog.clear()
    allowed = fresh_app(monkeypatch, evicting.url, allow_eviction="true")
    preflight(allowed)
    assert "allowed by CAR_DREAM_ALLOW_EVICTION=true" in caplog.text


def test_a_redis_refusing_config_get_gets_one_warning_not_a_failure(
    evicting: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    preflight(fresh_app(monkeypatch, managed_url(evicting)))
    warnings = [r for r in caplog.records if "CONFIG GET" in r.getMessage()]
    assert len(warnings) == 1 and MANAGED not in caplog.text  # the password masked
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", managed_url(evicting))
    checked = CliRunner().invoke(cli, ["check"])
    assert checked.exit_code == 0, checked.output
    assert checked.output.count("refused CONFIG GET maxmemory-policy") == 1


def test_cli_warns_and_check_fails_on_an_evicting_redis(
    evicting: RedisServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", evicting.url)
    monkeypatch.setenv("CAR_DREAM_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    status = runner.invoke(cli, ["reports"])
    assert status.exit_code == 0, status.output
    assert "car-dream: warning: CAR_DREAM_REDIS_URL: " in status.output
    checked = runner.invoke(cli, ["check"])
    assert checked.exit_code == 1
    assert "maxmemory-policy: allkeys-lru (evicts" in checked.output
    monkeypatch.setenv("CAR_DREAM_ALLOW_EVICTION", "true")
    allowed = runner.invoke(cli, ["check"])
    assert allowed.exit_code == 0, allowed.output
    assert "allowed by CAR_DREAM_ALLOW_EVICTION=true" in allowed.output
