"""JSON over HTTP to an OpenAI-compatible server: retries with backoff, a concurrency limit, one clear error.

Thread-safe: several episodes share one client. Each try has one deadline from connecting to the reply's last byte
(`timeout_s`, see deadline.py: a server that trickles its reply cannot hold a run) and a cap on the reply's size.
Retried: connection errors, timeouts, oversized or non-JSON replies, 408/409/425/429 and 5xx (waiting at least as long
as the server's Retry-After asks, up to 30 s). The API key comes from the environment variable NAMED by `api_key_env`
(or, for a server this process started, from that code path) and is never stored or printed.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from typing import Any

import httpcore

from jitrl_bench.errors import UserError
from jitrl_bench.net.deadline import Deadline, DeadlineBackend

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_WAIT_S = 30.0  # the longest Retry-After honoured
DEFAULT_MAX_REPLY_BYTES = 64 * 2**20


class ReplyTooLarge(Exception):
    """The reply grew past the client's cap (a server gone wrong, or a cap set too low)."""


class JSONClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key_env: str | None,
        timeout_s: float,
        max_retries: int,
        backoff_s: float,
        max_concurrency: int,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        api_key: str | None = None,
    ) -> None:
        """`api_key`: a key this process holds itself (a server it started); else the one in $`api_key_env`."""
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_reply_bytes = max_reply_bytes
        self._own_key = api_key is not None
        headers = [(b"Content-Type", b"application/json"), (b"Accept", b"application/json")]
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise UserError(f"policy.api_key_env names ${api_key_env}, which is not set")
        if api_key:
            headers.append((b"Authorization", f"Bearer {api_key}".encode()))
        self._headers = headers
        self._deadline = Deadline()
        self._pool = httpcore.ConnectionPool(
            max_connections=max_concurrency, network_backend=DeadlineBackend(self._deadline)
        )
        self._slots = threading.BoundedSemaphore(max_concurrency)

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with retries; UserError (naming the URL) when the server stays unreachable or rejects it."""
        url = self.base_url + path
        content = json.dumps(payload).encode()
        tries = self.max_retries + 1
        problem = ""
        asked_wait_s = 0.0
        for attempt in range(tries):
            if attempt:
                delay = min(self.backoff_s * 2 ** (attempt - 1), 10.0) * (1.0 + 0.25 * random.random())
                time.sleep(max(delay, asked_wait_s))
            asked_wait_s = 0.0
            try:
                with self._slots:
                    status, headers, body = self._send(url, content)
            except httpcore.TimeoutException:
                problem = f"no complete reply within policy.timeout_s={self.timeout_s:g} s"
                continue
            except ReplyTooLarge as e:
                problem = str(e)
                continue
            except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.ProxyError, OSError) as e:
                problem = f"{type(e).__name__}: {e}"
                continue
            if status in RETRY_STATUS:
                problem = f"HTTP {status}: {error_message(body)}"
                asked_wait_s = retry_after(headers)
                continue
            if status in (401, 403):
                where = (
                    "the server it started" if self._own_key
                    else f"${self.api_key_env}" if self.api_key_env else "no key (policy.api_key_env)"
                )  # fmt: skip
                raise UserError(f"server at {self.base_url} refused the API key from {where} (HTTP {status})")
            if status >= 400:
                raise UserError(f"server at {self.base_url} rejected {path} (HTTP {status}): {error_message(body)}")
            try:
                reply = json.loads(body)
            except RecursionError:
                problem = "the reply's JSON was nested too deeply"
                continue
            except ValueError:
                problem = "the reply was not JSON"
                continue
            if not isinstance(reply, dict):
                problem = "the reply was not a JSON object"
                continue
            return reply
        raise UserError(
            f"OpenAI-compatible server at {self.base_url} gave no usable reply in {tries} tries ({problem}); "
            "check that it is running (jitrl-bench serve) and policy.base_url"
        )

    def _send(self, url: str, content: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One try: status, headers and the whole body, all within the deadline and the size cap."""
        t = self.timeout_s
        cap = self.max_reply_bytes
        extensions = {"timeout": {"connect": t, "read": t, "write": t, "pool": t}}
        with (
            self._deadline.within(t),
            self._pool.stream("POST", url, headers=self._headers, content=content, extensions=extensions) as response,
        ):
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_stream():
                size += len(chunk)
                if size > cap:
                    raise ReplyTooLarge(f"the reply passed policy.max_reply_mb ({cap / 2**20:g} MiB)")
                chunks.append(chunk)
            return response.status, response.headers, b"".join(chunks)

    def close(self) -> None:
        self._pool.close()


def retry_after(headers: list[tuple[bytes, bytes]]) -> float:
    """The delay a Retry-After header asks for in seconds (0 when absent or an HTTP date), at most MAX_WAIT_S."""
    for name, value in headers:
        if name.lower() == b"retry-after":
            try:
                return min(max(float(value.decode("ascii").strip()), 0.0), MAX_WAIT_S)
            except (UnicodeDecodeError, ValueError):
                return 0.0
    return 0.0


def choices(body: dict[str, Any], n: int, base_url: str) -> list[dict[str, Any]]:
    choices = sorted(body.get("choices") or [], key=lambda c: int(c.get("index", 0)))
    if len(choices) != n:
        raise UserError(f"server at {base_url} returned {len(choices)} choices for {n} prompts")
    return choices


def message_text(body: dict[str, Any], base_url: str) -> str:
    try:
        return str(body["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError) as e:
        raise UserError(f"server at {base_url} returned no chat message") from e


def error_message(body: bytes) -> str:
    """The server's error message from an error reply's body (OpenAI's {"error": {"message": ...}} or any text)."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return body[:300].decode("utf-8", errors="replace")
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    message = error.get("message", error) if isinstance(error, dict) else error
    return str(message)[:300]
