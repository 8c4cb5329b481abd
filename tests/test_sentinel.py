"""Redis behind Sentinel: ``redis+sentinel://`` URLs for the memory, the broker, the
result backend and RedBeat (the fail-over itself: tests/chaos, scenario 11)."""

from __future__ import annotations

import secrets
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from car_dream.celery_config import celery_settings
from car_dream.config import load_config, mask_url
from car_dream.connection import check_credentials, memory_client
from car_dream.consolidate import run_pass
from car_dream.errors import ConfigError
from car_dream.sentinel import parse_sentinel
from car_dream.store import MemoryStore
from car_dream.tasks import TASK_NAME

from .celery_env import Processes, fresh_app, process_env, procs_fixture  # noqa: F401
from .conftest import wait_for
from .sentinels import SentinelGroup
from .servers import make_pki

PASSWORD = "srv-" + secrets.token_hex(8)
SENTINEL_PASSWORD = "snt-" + secrets.token_hex(8)
URL = "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/3?sentinel_password=sp"


def test_a_sentinel_url_is_read_whole() -> None:
    parsed = parse_sentinel(URL)
    assert parsed.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert (parsed.service, parsed.db, parsed.password) == ("mymaster", 3, "pw")
    assert (parsed.sentinel_password, parsed.tls) == ("sp", False)
    tls = parse_sentinel("rediss+sentinel://u:p%40w@h/m?ssl_ca_certs=/ca.pem&ssl_cert_reqs=none")
    assert (tls.username, tls.password, tls.db, tls.tls) == ("u", "p@w", 0, True)
    assert tls.use_ssl() == {"ssl_cert_reqs": ssl.CERT_NONE, "ssl_ca_certs": "/ca.pem"}
    assert mask_url(URL) == URL.replace(":pw@", ":***@").replace("=sp", "=***")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h:26379", "the path is the service name"),
        ("redis+sentinel://h:26379/m/x", "the database must be a number"),
        ("redis+sentinel:///m", "name at least one Sentinel"),
        ("redis+sentinel://h:port/m", "a Sentinel port must be a number"),
        ("redis+sentinel://h/m?sentinel_pasword=x", "unknown option 'sentinel_pasword'"),
        ("redis+sentinel://h/m?ssl_ca_certs=/ca", "TLS options need a rediss+sentinel:// URL"),
    ],
)
def test_a_bad_sentinel_url_is_refused_naming_the_variable(url: str, says: str) -> None:
    for field, var in (
        ("redis_url", "CAR_DREAM_REDIS_URL"),
        ("memory_url", "CAR_DREAM_MEMORY_URL"),
    ):
        with pytest.raises(ConfigError) as err:
            load_config(**{field: url})
        assert var in str(err.value) and says in str(err.value)


def test_celery_kombu_and_redbeat_are_told_the_service_and_the_sentinel_password() -> None:
    config = load_config(redis_url=URL.replace("rediss", "redis"))
    settings = celery_settings(config, URL)
    one = "sentinel://:pw@{}/3"
    expected = ";".join(one.format(h) for h in ("10.0.0.1:26379", "10.0.0.2:26379", "[::1]:26380"))
    assert settings["broker_url"] == settings["result_backend"] == expected
    options = {"master_name": "mymaster", "sentinel_kwargs": {"password": "sp"}}
    assert settings["broker_transport_options"] == options
    assert settings["result_backend_transport_options"] == options
    assert settings["redbeat_redis_url"].startswith("redis-sentinel://")
    assert settings["redbeat_redis_options"] == {
        "sentinels": [["10.0.0.1", 26379], ["10.0.0.2", 26379], ["::1", 26380]],
        "service_name": "mymaster",
        "db": 3,
        "sentinel_kwargs": {"password": "sp"},
        "password": "pw",
    }
    tls = celery_settings(config, "rediss+sentinel://:pw@h:1/m?ssl_ca_certs=/ca.pem")
    use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"}
    for key in ("broker_use_ssl", "redis_backend_use_ssl", "redbeat_redis_use_ssl"):
        assert tls[key] == use_ssl
    assert tls["broker_transport_options"]["sentinel_kwargs"] == {"ssl": True, **use_ssl}


@pytest.fixture(scope="module", params=["plain", "tls"])
def group(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SentinelGroup]:
    """Servers and Sentinels, plain or (``rediss+sentinel://``) all over TLS."""
    base = tmp_path_factory.mktemp(f"sentinel-{request.param}")
    pki = None
    if request.param == "tls":
        if shutil.which("openssl") is None:
            pytest.skip("openssl is needed to make a throwaway CA")
        pki = make_pki(base / "pki")
    g = SentinelGroup(base, PASSWORD, SENTINEL_PASSWORD, pki)
    g.start()
    yield g
    g.stop()


@pytest.mark.integration
def test_the_memory_behind_sentinel(group: SentinelGroup, tmp_path: Path) -> None:
    client = memory_client(group.url(db=1))
    store = MemoryStore(client, "behind")
    store.ingest_fact("f1", "s", "a fact")
    report = run_pass(store, load_config(interval_secs=60, data_dir=tmp_path))
    assert report.status == "completed" and report.nodes_embedded == 1
    primary = group.primary_client(db=1)
    assert primary.exists(store.keys.node("f1"))
    check_credentials({"CAR_DREAM_MEMORY_URL": group.url()})


@pytest.mark.integration
@pytest.mark.parametrize("wrong", ["sentinel", "server"])
def test_wrong_credentials_stop_start_up_naming_the_variable(
    group: SentinelGroup, wrong: str
) -> None:
    url = group.url()
    if wrong == "sentinel":
        url = url.replace(SENTINEL_PASSWORD, "nope")
    else:
        url = url.replace(f":{PASSWORD}@", ":nope@")
    with pytest.raises(ConfigError) as err:
        check_credentials({"CAR_DREAM_REDIS_URL": url})
    text = str(err.value)
    assert text.startswith("CAR_DREAM_REDIS_URL: ") and "refused the credentials" in text
    assert PASSWORD not in text and SENTINEL_PASSWORD not in text


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_worker_and_beat_on_sentinel_urls(
    group: SentinelGroup, procs: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Broker, results, RedBeat's schedule and the memory all through the Sentinels."""
    url = group.url(db=2)
    env = process_env(url, tmp_path / "data", interval_secs=2)
    worker = procs.worker(env)
    beat = procs.beat(env)
    store = MemoryStore(memory_client(url), "default")

    def beat_passes() -> bool:
        return any(r.status == "completed" and not r.trailing for r in store.reports(10))

    wait_for(beat_passes, timeout=90)
    primary = group.primary_client(db=2)
    assert any(k.startswith(b"car-dream:redbeat:") for k in primary.scan_iter())  # RedBeat's
    triggered = fresh_app(monkeypatch, url, interval_secs=2).tasks[TASK_NAME].delay(force=True)
    assert triggered.get(timeout=60)["status"] in ("completed", "skipped")
    assert any(k.startswith(b"celery-task-meta-") for k in primary.scan_iter())  # results
    for text in (worker.read_text(), beat.read_text()):
        assert PASSWORD not in text and SENTINEL_PASSWORD not in text
