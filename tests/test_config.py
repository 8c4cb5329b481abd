"""Settings: defaults, CAR_DREAM_* variables (and a mapping: Django's CAR_DREAM dict), errors
that name the variable, masking."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from pydantic import ValidationError

from car_dream.config import DreamConfig, load_config, load_config_from, mask_url
from car_dream.errors import CarDreamError, ConfigError


def test_defaults() -> None:
    cfg = load_config()
    assert cfg.interval_secs == 3600
    assert cfg.lock_ttl == 1800
    assert cfg.namespace == "default"
    assert cfg.batch_size == 500
    assert cfg.max_trailing == 1
    assert cfg.redis_url is None and cfg.broker_url is None
    assert cfg.embeddings_path is None
    assert cfg.trajectory_dir is None
    assert cfg.outcome_profiles_path is None


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAR_DREAM_INTERVAL_SECS", "10")
    monkeypatch.setenv("CAR_DREAM_NAMESPACE", "team.a-1")
    monkeypatch.setenv("CAR_DREAM_BATCH_SIZE", "7")
    monkeypatch.setenv("CAR_DREAM_MAX_TRAILING", "3")
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", "rediss://:pw@cache.example:6380/2")
    monkeypatch.setenv("CAR_DREAM_BROKER_URL", "amqp://guest@mq//")
    monkeypatch.setenv("CAR_DREAM_TRAJECTORY_DIR", str(tmp_path / "traj"))
    monkeypatch.setenv("CAR_DREAM_OUTCOME_PROFILES_PATH", str(tmp_path / "p.json"))
    monkeypatch.setenv("CAR_DREAM_EMBEDDINGS_PATH", str(tmp_path / "e.npz"))
    monkeypatch.setenv("CAR_DREAM_DATA_DIR", str(tmp_path / "data"))
    cfg = load_config()
    assert cfg.interval_secs == 10
    assert cfg.lock_ttl == 5
    assert cfg.namespace == "team.a-1"
    assert cfg.batch_size == 7
    assert cfg.max_trailing == 3
    assert cfg.redis_url == "rediss://:pw@cache.example:6380/2"
    assert cfg.broker_url == "amqp://guest@mq//"
    assert cfg.trajectory_dir == tmp_path / "traj"
    assert cfg.outcome_profiles_path == tmp_path / "p.json"
    assert cfg.embeddings_path == tmp_path / "e.npz"
    assert cfg.data_dir == tmp_path / "data"


def test_explicit_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAR_DREAM_INTERVAL_SECS", "10")
    assert load_config(interval_secs=20).interval_secs == 20


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://u:p@h:6380/1", "unix:///tmp/redis.sock?db=3"]
)
def test_redis_url_schemes_accepted(url: str) -> None:
    assert load_config(redis_url=url).redis_url == url


def test_empty_redis_url_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", "")
    assert load_config().redis_url is None


@pytest.mark.parametrize(("interval", "ttl"), [(2, 1), (3, 1), (61, 30), (3600, 1800)])
def test_lock_ttl_is_half_the_interval(interval: int, ttl: int) -> None:
    assert load_config(interval_secs=interval).lock_ttl == ttl


INVALID = [
    ("CAR_DREAM_INTERVAL_SECS", "1"),
    ("CAR_DREAM_INTERVAL_SECS", "0"),
    ("CAR_DREAM_INTERVAL_SECS", "soon"),
    ("CAR_DREAM_BATCH_SIZE", "0"),
    ("CAR_DREAM_BATCH_SIZE", "-5"),
    ("CAR_DREAM_MAX_TRAILING", "-1"),
    ("CAR_DREAM_NAMESPACE", "a{b"),
    ("CAR_DREAM_NAMESPACE", "x" * 65),
    ("CAR_DREAM_NAMESPACE", "has space"),
    ("CAR_DREAM_REDIS_URL", "http://localhost:6379/0"),
    ("CAR_DREAM_REDIS_URL", "localhost:6379"),
    ("CAR_DREAM_BROKER_URL", "http://localhost/"),
]


@pytest.mark.parametrize(("var", "value"), INVALID)
def test_invalid_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert var in str(info.value)
    assert isinstance(info.value, CarDreamError)


@pytest.mark.parametrize(("var", "value"), INVALID)
def test_invalid_override_names_the_variable(var: str, value: str) -> None:
    field = var.removeprefix("CAR_DREAM_").lower()
    with pytest.raises(ConfigError, match=var):
        load_config(**{field: value})


def test_only_the_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAR_DREAM_BATCH_SIZE", "0")
    monkeypatch.setenv("CAR_DREAM_INTERVAL_SECS", "30")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "CAR_DREAM_BATCH_SIZE" in str(info.value)
    assert "CAR_DREAM_INTERVAL_SECS" not in str(info.value)


@pytest.mark.parametrize("var", ["CAR_DREAM_REDIS_URL", "CAR_DREAM_BROKER_URL"])
def test_password_of_an_invalid_url_is_masked(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, "http://user:s3cr3t-pw@host:6379/0")
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert var in message
    assert "s3cr3t-pw" not in message
    assert "***" in message
    # Nor anywhere in the traceback a log would print (no chained ValidationError).
    assert "s3cr3t-pw" not in "".join(traceback.format_exception(info.value))


def test_password_of_an_url_with_a_bad_port_is_masked() -> None:
    secret = "s3cr3t-" + "pw"  # not spelled out: the traceback quotes this source
    with pytest.raises(ConfigError) as info:
        load_config(redis_url=f"http://:{secret}@host:notaport/0")
    assert secret not in "".join(traceback.format_exception(info.value))


def test_config_is_frozen() -> None:
    cfg = load_config()
    with pytest.raises(ValidationError):
        cfg.interval_secs = 5  # type: ignore[misc]
    assert isinstance(cfg, DreamConfig)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:pw@host/1", "redis://user:***@host/1"),
        (
            "rediss://default:p%40ss@cache.example:6380/0?ssl_cert_reqs=none",
            "rediss://default:***@cache.example:6380/0?ssl_cert_reqs=none",
        ),
        ("unix://:pw@/tmp/redis.sock?db=2", "unix://:***@/tmp/redis.sock?db=2"),
    ],
)
def test_mask_url_masks_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    "url", [None, "", "redis://localhost:6379/0", "redis://user@host/0", "unix:///tmp/r.sock"]
)
def test_mask_url_leaves_urls_without_password_alone(url: str | None) -> None:
    assert mask_url(url) == url


def test_mask_url_keeps_an_ipv6_host_valid() -> None:
    assert mask_url("redis://:pw@[::1]:6379/0") == "redis://:***@[::1]:6379/0"


@pytest.mark.parametrize("url", ["redis://:pw@host:99999/0", "redis://:pw@host:port/0"])
def test_mask_url_never_raises(url: str) -> None:
    masked = mask_url(url)
    assert masked is not None and "pw" not in masked


@pytest.mark.parametrize(
    "var", ["CAR_DREAM_REDIS_URL", "CAR_DREAM_BROKER_URL", "CAR_DREAM_MEMORY_URL"]
)
@pytest.mark.parametrize(
    "url",
    [
        "redis://:pa@ss-word@127.0.0.1:6379/0",
        "redis://user:pa@ss-word@127.0.0.1:6379/0",
        "redis://pa@ss-word@127.0.0.1:6379/0",
        "redis://:pa@@ss-word@127.0.0.1:6379/0",
    ],
)
def test_an_unencoded_at_in_the_password_is_named_and_not_shown(
    monkeypatch: pytest.MonkeyPatch, var: str, url: str
) -> None:
    monkeypatch.setenv(var, url)
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert var in message and "percent-encode" in message and "%40" in message
    for part in ("pa@", "ss-word"):
        assert part not in message
        assert part not in "".join(traceback.format_exception(info.value))


def test_a_percent_encoded_at_is_fine() -> None:
    url = "redis://:pa%40ss-word@127.0.0.1:6379/0"
    assert load_config(redis_url=url).redis_url == url
    assert mask_url(url) == "redis://:***@127.0.0.1:6379/0"


# -- settings from a mapping (Django's CAR_DREAM dict) ---------------------------------


def test_the_dict_comes_first_and_the_environment_fills_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAR_DREAM_NAMESPACE", "from-env")
    monkeypatch.setenv("CAR_DREAM_INTERVAL_SECS", "999")
    config = load_config_from(
        {"REDIS_URL": "redis://h:1/2", "INTERVAL_SECS": 30, "queue": "dreams"}, "CAR_DREAM"
    )
    assert config.redis_url == "redis://h:1/2" and config.interval_secs == 30
    assert config.namespace == "from-env" and config.queue == "dreams"


def test_a_bad_value_in_the_dict_is_named_as_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r'CAR_DREAM\["INTERVAL_SECS"\]'):
        load_config_from({"INTERVAL_SECS": 1}, "CAR_DREAM")
    monkeypatch.setenv("CAR_DREAM_BATCH_SIZE", "0")
    with pytest.raises(ConfigError, match=r"CAR_DREAM_BATCH_SIZE") as bad:
        load_config_from({"INTERVAL_SECS": 10}, "CAR_DREAM")
    assert '["INTERVAL_SECS"]' not in str(bad.value)
    monkeypatch.delenv("CAR_DREAM_BATCH_SIZE")
    with pytest.raises(ConfigError) as masked:
        load_config_from({"REDIS_URL": "http://:s3cret@h/0"}, "CAR_DREAM")
    assert 'CAR_DREAM["REDIS_URL"]' in str(masked.value) and "s3cret" not in str(masked.value)


def test_a_key_that_is_no_setting_is_an_error_with_the_closest_name() -> None:
    with pytest.raises(ConfigError, match=r'CAR_DREAM\["REDIS_ULR"\].*"REDIS_URL"'):
        load_config_from({"REDIS_ULR": "redis://h/0"}, "CAR_DREAM")
