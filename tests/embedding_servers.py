"""OpenAI-compatible embedding servers on loopback, serving the tests' MiniLM model.

:class:`InfinityServer` is the real thing: ``infinity_emb`` (PyPI ``infinity-emb``) in a
venv of its own (its pins clash with ours; ``make test`` builds ``.venv-infinity``).
:class:`ScriptedServer` speaks the same documented request and answer shapes from a
thread, with the model of this process, and answers each request with the next fault in
its script (401, 429, 500, malformed JSON, wrong counts and widths, NaN, a stall, a
dropped connection) or, when the script is empty, correctly.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from .conftest import free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parent.parent
INFINITY_BIN = Path(
    os.environ.get("CAR_DREAM_TEST_INFINITY", ROOT / ".venv-infinity" / "bin" / "infinity_emb")
)
SERVED_NAME = "all-MiniLM-L6-v2"


class InfinityServer:
    """``infinity_emb v2`` serving the model directory ``model`` under ``/v1``, with a key."""

    def __init__(self, directory: Path, model: str, api_key: str) -> None:
        self.dir, self.model, self.api_key = directory, model, api_key
        self.port = free_port()
        self.log = directory / "infinity.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 240) -> None:
        if not INFINITY_BIN.exists():
            raise AssertionError(
                f"{INFINITY_BIN} is missing: `make test` installs infinity-emb into "
                ".venv-infinity (or set CAR_DREAM_TEST_INFINITY to an infinity_emb)"
            )
        cmd = [str(INFINITY_BIN), "v2", "--model-id", self.model]
        cmd += ["--served-model-name", SERVED_NAME, "--api-key", self.api_key]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--url-prefix", "/v1"]
        cmd += ["--engine", "torch", "--device", "cpu"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAR_DREAM_")}
        env.update(HF_HUB_OFFLINE="1", DO_NOT_TRACK="1", INFINITY_ANONYMOUS_USAGE_STATS="0")
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=self.dir,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, timeout=timeout, interval=0.5)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"infinity_emb exited:\n{self.log.read_text()[-3000:]}")
        request = urllib.request.Request(
            f"{self.url}/models", headers={"Authorization": f"Bearer {self.api_key}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


Embed = Callable[[Sequence[str]], np.ndarray]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a stalled answer finds its client gone: expected, not worth a traceback


class ScriptedServer:
    """``POST /v1/embeddings`` in a thread; ``script`` holds the faults still to answer."""

    def __init__(self, embed: Embed, api_key: str | None = None, stall: float = 5.0) -> None:
        self.embed, self.api_key, self.stall = embed, api_key, stall
        self.script: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                auth = self.headers.get("Authorization")
                server.requests.append({"path": self.path, "auth": auth, "body": json.loads(body)})
                server.answer(self)

        return Handler

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        if h.path != "/v1/embeddings":
            return self.error(h, 404, "not found")
        auth = h.headers.get("Authorization")
        if self.api_key and auth != f"Bearer {self.api_key}":
            # Like some servers, it quotes what it was given (the client must not pass it on).
            return self.error(h, 401, f"Incorrect API key provided: {auth}")
        fault = self.script.pop(0) if self.script else "ok"
        request = self.requests[-1]["body"]
        texts = request["input"] if isinstance(request["input"], list) else [request["input"]]
        if fault == "429":
            return self.error(h, 429, "Rate limit reached", {"Retry-After": "0"})
        if fault == "429-for-an-hour":
            return self.error(h, 429, "Rate limit reached", {"Retry-After": "3600"})
        if fault in ("400", "500", "503"):
            return self.error(h, int(fault), f"HTTP {fault} from the model server")
        if fault == "malformed":
            return self.send(h, 200, b'{"object": "list", "data": [{"embedding": [0.1, ')
        if fault == "html":
            return self.send(h, 200, b"<html><body>502 Bad Gateway</body></html>")
        if fault == "stall":
            time.sleep(self.stall)
        if fault == "drop":
            h.close_connection = True
            h.connection.shutdown(2)
            return None
        rows = [v.tolist() for v in np.asarray(self.embed(texts), dtype=np.float32)]
        if fault == "count":
            rows = rows[:-1]
        elif fault == "dims":
            rows = [r[:100] for r in rows]
        elif fault == "nan":
            rows[0][0] = float("nan")  # json.dumps writes NaN, as some servers do
        data = [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)]
        if fault == "reversed":  # legal: clients must order by index
            data.reverse()
        usage = {"prompt_tokens": 0, "total_tokens": 0}
        reply = {"object": "list", "data": data, "model": request["model"], "usage": usage}
        return self.send(h, 200, json.dumps(reply).encode())

    def error(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = {"error": {"message": message, "type": "invalid_request_error"}}
        self.send(h, status, json.dumps(body).encode(), headers)

    @staticmethod
    def send(
        h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)
