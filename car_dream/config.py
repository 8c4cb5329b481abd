"""Settings: one pydantic-settings class, read from ``CAR_DREAM_*`` variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .embedding_models import parse_embedder
from .errors import ConfigError
from .keys import validate_namespace

__all__ = ["DreamConfig", "load_config", "mask_url"]

ENV_PREFIX = "CAR_DREAM_"
REDIS_SCHEMES = ("redis", "rediss", "unix")
BROKER_SCHEMES = (*REDIS_SCHEMES, "amqp", "amqps", "pyamqp")
MEMORY_SCHEMES = (*REDIS_SCHEMES, "redis+cluster", "rediss+cluster")
HTTP_SCHEMES = ("http", "https")
URL_FIELDS = ("redis_url", "broker_url", "memory_url", "embedder_url")
QUEUE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}\Z")


def mask_url(url: str | None) -> str | None:
    """The URL with any password replaced by ``***``: safe for logs and reports."""
    if not url:
        return url
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _check_url(value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        raise ValueError(f"scheme must be one of {', '.join(schemes)}, got {scheme!r}")
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
    try:
        return DreamConfig(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            var = ENV_PREFIX + field.upper()
            given = err.get("input")
            if field in URL_FIELDS and isinstance(given, str):
                given = mask_url(given)
            elif field == "embedder_api_key":
                given = "***"
            problems.append(f"{var}: {err['msg']} (got {given!r})")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
