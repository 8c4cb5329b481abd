"""An OpenAI-compatible ``/v1/embeddings`` client (OpenAI, Ollama, vLLM, TEI, Infinity,
LiteLLM, ...), on the standard library's ``urllib``: no HTTP dependency.

Request ``{"model": m, "input": [texts]}``, answer ``{"data": [{"index": i,
"embedding": [floats]}, ...]}``. Each request has a timeout; 429, 5xx, timeouts and
refused connections are retried a bounded number of times with a capped backoff
(honouring ``Retry-After``); anything else, or an answer that is not that shape, is an
:class:`EmbedderError` at once. The key goes into the ``Authorization`` header and
nowhere else: not in ``repr``, errors or logs.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import SecretStr

from .config import mask_url
from .errors import EmbedderError

if TYPE_CHECKING:
    from .config import DreamConfig

__all__ = ["DEFAULT_URL", "OpenAIEmbedder"]

DEFAULT_URL = "https://api.openai.com/v1"
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_ERROR_TEXT = 300


class OpenAIEmbedder:
    """``embed(texts)`` through one POST to ``<url>/embeddings``; rows L2-normalised."""

    def __init__(
        self,
        model: str,
        url: str = DEFAULT_URL,
        api_key: SecretStr | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 2,
    ) -> None:
        self.model = model
        self.model_id = f"openai:{model}"
        base = url.rstrip("/")
        self.endpoint = base if base.endswith("/embeddings") else base + "/embeddings"
        self._key = api_key
        self.timeout = timeout
        self.retries = retries
        self.dims: int | None = None  # fixed by the first good answer

    @classmethod
    def from_config(cls, model: str, config: DreamConfig) -> OpenAIEmbedder:
        return cls(
            model,
            config.embedder_url or DEFAULT_URL,
            config.embedder_api_key,
            timeout=config.embedder_timeout_secs,
            retries=config.embedder_retries,
        )

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model!r}, url={mask_url(self.endpoint)!r})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims or 0), dtype=np.float32)
        body = json.dumps({"model": self.model, "input": list(texts)}).encode()
        return self._parse(self._post(body), len(texts))

    # -- the wire ------------------------------------------------------------------

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key is not None and self._key.get_secret_value():
            headers["Authorization"] = "Bearer " + self._key.get_secret_value()
        where = mask_url(self.endpoint)
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            request = urllib.request.Request(self.endpoint, body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return bytes(response.read())
            except urllib.error.HTTPError as exc:
                detail = self._redact(exc.read()[:MAX_ERROR_TEXT].decode("utf-8", "replace"))
                if exc.code in (401, 403):
                    raise EmbedderError(
                        f"{where} refused the request (HTTP {exc.code}: {detail}); "
                        "check CAR_DREAM_EMBEDDER_API_KEY"
                    ) from None
                if exc.code not in RETRY_STATUS or last:
                    raise EmbedderError(f"{where} answered HTTP {exc.code}: {detail}") from None
                time.sleep(self._backoff(attempt, exc.headers.get("Retry-After")))
            except (urllib.error.URLError, TimeoutError, http.client.HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if last:
                    raise EmbedderError(
                        f"{where} unreachable after {self.retries + 1} tries: "
                        f"{type(exc).__name__}: {self._redact(str(reason))}"
                    ) from None
                time.sleep(self._backoff(attempt, None))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        """Seconds before the next try: ``Retry-After`` if given, else 0.5, 1, 2, ...;
        capped at the request timeout so a pass never waits on a server for long."""
        try:
            wait = float(retry_after) if retry_after else 0.5 * 2**attempt
        except ValueError:  # an HTTP date: not worth parsing for a capped wait
            wait = 0.5 * 2**attempt
        return max(0.0, min(wait, self.timeout))

    def _parse(self, raw: bytes, count: int) -> np.ndarray:
        """The answer as a matrix in input order. Counts, NaN and widths within a pass are
        :func:`~car_dream.embedder.embed_checked`'s; the width of this server's model is
        remembered here, so a server that swaps models between passes is caught too."""
        where = mask_url(self.endpoint)
        try:
            reply: Any = json.loads(raw)
            rows = sorted(reply["data"], key=lambda d: int(d.get("index", 0)))
            vectors = np.asarray([d["embedding"] for d in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EmbedderError(
                f"{where} answered something else than embeddings ({type(exc).__name__}): "
                f"{self._redact(raw[:MAX_ERROR_TEXT].decode('utf-8', 'replace'))!r}"
            ) from None
        if vectors.ndim == 2 and len(vectors) == count:
            if self.dims is not None and vectors.shape[1] != self.dims:
                raise EmbedderError(f"{where}: {vectors.shape[1]} dimensions, not {self.dims}")
            self.dims = vectors.shape[1]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            np.divide(vectors, norms, out=vectors, where=norms > 0)
        return vectors

    def _redact(self, text: str) -> str:
        """``text`` without the key, should a server echo it back."""
        key = self._key.get_secret_value() if self._key is not None else ""
        return text.replace(key, "***") if key else text
