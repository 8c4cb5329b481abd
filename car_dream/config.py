"""Settings: one pydantic-settings class, read from ``CAR_DREAM_*`` variables (and, under
Django, from its ``CAR_DREAM`` dict first)."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .embedder_spec import parse_embedder
from .errors import ConfigError
from .keys import validate_namespace
from .sentinel import SCHEMES as SENTINEL_SCHEMES
from .sentinel import parse_sentinel

__all__ = ["DreamConfig", "load_config", "load_config_from", "mask_url", "unknown_settings"]

ENV_PREFIX = "CAR_DREAM_"
TEST_PREFIX = ENV_PREFIX + "TEST_"  # the test suite's own variables, no settings
REDIS_SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES)
BROKER_SCHEMES = (*REDIS_SCHEMES, "amqp", "amqps", "pyamqp")
MEMORY_SCHEMES = (*REDIS_SCHEMES, "redis+cluster", "rediss+cluster")
HTTP_SCHEMES = ("http", "https")
URL_FIELDS = ("redis_url", "broker_url", "memory_url", "embedder_url")
SECRET_QUERY = re.compile(r"(\b\w*password)=[^&]*")
QUEUE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}\Z")


def mask_url(url: str | None) -> str | None:
    """The URL with any password replaced by ``***``: safe for logs and reports."""
    if not url:
        return url
    base, question, query = url.partition("?")
    if "password=" in query:  # ?password= (redis-py), ?sentinel_password= (Sentinel)
        url = base + question + SECRET_QUERY.sub(r"\1=***", query)
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if "@" in userinfo:  # an unencoded '@': where the user ends is anyone's guess
        return urlunsplit(parts._replace(netloc=f"***@{host}"))
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _check_url(value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"scheme must be one of {', '.join(schemes)}, got {parts.scheme!r}")
    if parts.netloc.count("@") > 1:
        # Celery's URL parser splits at the first '@' and takes the rest of the password
        # for the host name ("Error -2 connecting to ss:6379").
        raise ValueError(
            "the user name or password contains an unencoded '@': percent-encode it "
            "as %40, e.g. redis://:p%40ss@host:6379/0"
        )
    if parts.scheme in SENTINEL_SCHEMES:
        parse_sentinel(value)  # its ValueError says what is wrong
    return value


class DreamConfig(BaseSettings):
    """Everything a pass, the worker, beat and the CLI need; built once, passed down."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    interval_secs: int = Field(3600, ge=2, description="Seconds between scheduled passes.")
    redis_url: str | None = Field(None, repr=False, description="Memory, locks, results.")
    broker_url: str | None = Field(None, repr=False, description="Celery broker.")
    memory_url: str | None = Field(
        None, repr=False, description="Memory and locks, if not in redis_url (+cluster: a Cluster)."
    )
    namespace: str = Field("default", description="The memory a pass consolidates.")
    embeddings_path: Path | None = None
    trajectory_dir: Path | None = None
    outcome_profiles_path: Path | None = None
    max_trailing: int = Field(1, ge=0, le=100)
    batch_size: int = Field(500, ge=1, le=100_000)
    dispatch: bool = Field(False, description="Beat fans out one pass per registered namespace.")
    dispatch_chunk: int = Field(500, ge=1, le=10_000)
    queue: str = Field("celery", description="Celery queue of car-dream's tasks.")
    metrics_max_namespaces: int = Field(
        100, ge=1, le=10_000, description="Namespaces the exporter shows one by one."
    )
    allow_eviction: bool = Field(
        False, description="Run on a Redis whose maxmemory-policy may evict (warned)."
    )
    journal_retention_secs: int = Field(
        30 * 86400, ge=60, description="How long the journal keeps what a pass removed."
    )
    access_resolution_secs: int = Field(
        900, ge=1, description="At most one access written per node in this many seconds."
    )
    max_nodes: int | None = Field(
        None, ge=1, description="Budget: the forget step keeps the namespace to this many nodes."
    )
    forget_unused_after_secs: int | None = Field(
        None, ge=60, description="The forget step removes facts unused for this long."
    )
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".local/share/car-dream")
    embedder: str = Field(
        "hashing",
        description="hashing, sentence-transformers:<model>, openai:<model>, module:factory.",
    )
    embedder_url: str | None = Field(
        None, repr=False, description="The OpenAI-compatible server, up to /v1 (openai: only)."
    )
    embedder_api_key: SecretStr | None = Field(None, repr=False)
    embedder_timeout_secs: float = Field(30.0, gt=0, le=600, description="Per model request.")
    embedder_retries: int = Field(2, ge=0, le=10, description="Tries after a failed request.")
    embed_batch: int = Field(32, ge=1, le=10_000, description="Texts per model call.")
    merge: bool = Field(True, description="The merge step: duplicates of new nodes merged.")
    merge_threshold: float | None = Field(
        None, gt=0, le=1, description="Cosine for a merge; unset: the embedder's calibrated one."
    )
    merge_across_subjects: bool = Field(
        False, description="Merge duplicates of different subjects (same kind still)."
    )
    search_scan_limit: int = Field(
        10_000, ge=1, description="Search without Redis 8 vector sets scans at most this many."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return _check_url(value, REDIS_SCHEMES)

    @field_validator("memory_url")
    @classmethod
    def _memory_url(cls, value: str | None) -> str | None:
        return _check_url(value, MEMORY_SCHEMES)

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        return _check_url(value, BROKER_SCHEMES)

    @field_validator("embedder")
    @classmethod
    def _embedder(cls, value: str) -> str:
        parse_embedder(value)
        return value.strip()

    @field_validator("embedder_url")
    @classmethod
    def _embedder_url(cls, value: str | None) -> str | None:
        return _check_url(value, HTTP_SCHEMES)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return validate_namespace(value)

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str) -> str:
        if not QUEUE_RE.match(value):
            raise ValueError("use 1-200 letters, digits, '-', '_', '.' or ':'")
        return value

    @property
    def lock_ttl(self) -> int:
        """The coalescing window: half the interval, as in the seed."""
        return self.interval_secs // 2


def load_config(**overrides: Any) -> DreamConfig:
    """Build the settings, turning a validation error into one naming the variable."""
    return _build(overrides, lambda field: ENV_PREFIX + field.upper())


def load_config_from(mapping: Mapping[str, Any], where: str) -> DreamConfig:
    """Settings from ``mapping`` (Django's ``CAR_DREAM = {"REDIS_URL": ...}``), the
    ``CAR_DREAM_*`` variables filling in what it leaves out. An error names the key as
    ``where["KEY"]``; a key that is no setting is an error too, since the mapping is
    car-dream's alone (unlike the environment)."""
    known = {name.upper(): name for name in DreamConfig.model_fields}
    given: dict[str, Any] = {}
    for key, value in mapping.items():
        field = known.get(str(key).upper())
        if field is None:
            close = difflib.get_close_matches(str(key).upper(), list(known), n=1)
            hint = f'; did you mean {where}["{close[0]}"]?' if close else ""
            raise ConfigError(f'invalid settings: {where}["{key}"]: no such setting{hint}')
        given[field] = value

    def name_of(field: str) -> str:
        return f'{where}["{field.upper()}"]' if field in given else ENV_PREFIX + field.upper()

    return _build(given, name_of)


def _build(overrides: dict[str, Any], name_of: Callable[[str], str]) -> DreamConfig:
    try:
        return DreamConfig(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            given = err.get("input")
            if field in URL_FIELDS and isinstance(given, str):
                given = mask_url(given)
            elif field == "embedder_api_key":
                given = "***"
            problems.append(f"{name_of(field)}: {err['msg']} (got {given!r})")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


def unknown_settings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``CAR_DREAM_*`` variable that is no setting, with the closest name.

    A misspelt variable is otherwise ignored without a word, and the default used.
    """
    known = [name.upper() for name in DreamConfig.model_fields]
    env = os.environ if environ is None else environ
    warnings = []
    for name in sorted(env):
        upper = name.upper()  # pydantic-settings reads the variables case-insensitively
        if not upper.startswith(ENV_PREFIX) or upper.startswith(TEST_PREFIX):
            continue
        field = upper.removeprefix(ENV_PREFIX)
        if field in known:
            continue
        # Without the shared prefix, which would make every name look alike.
        close = difflib.get_close_matches(field, known, n=1)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
        warnings.append(f"unknown setting {name} ignored{hint}")
    return warnings
