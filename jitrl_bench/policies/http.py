"""JSON over HTTP to an OpenAI-compatible server: retries with backoff, a concurrency limit, one clear error.

Thread-safe: several episodes share one client. Retried: connection errors, timeouts, 408/409/425/429 and 5xx. The API
key comes from the environment variable NAMED by `api_key_env` and is never stored or printed.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

import httpx

from jitrl_bench.errors import UserError

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise UserError(f"policy.api_key_env names ${api_key_env}, which is not set")
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_concurrency),
        )
        self._slots = threading.BoundedSemaphore(max_concurrency)

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with retries; UserError (naming the URL) when the server stays unreachable or rejects it."""
        url = self.base_url + path
        tries = self.max_retries + 1
        problem = ""
        for attempt in range(tries):
            if attempt:
                delay = min(self.backoff_s * 2 ** (attempt - 1), 10.0)
                time.sleep(delay * (1.0 + 0.25 * random.random()))
            try:
                with self._slots:
                    response = self._client.post(url, json=payload)
            except httpx.TimeoutException:
                problem = f"no answer within {self.timeout_s:g} s"
                continue
            except httpx.TransportError as e:
                problem = f"{type(e).__name__}: {e}"
                continue
            if response.status_code in RETRY_STATUS:
                problem = f"HTTP {response.status_code}: {error_message(response)}"
                continue
            if response.status_code in (401, 403):
                where = f"${self.api_key_env}" if self.api_key_env else "no key (policy.api_key_env)"
                raise UserError(
                    f"server at {self.base_url} refused the API key from {where} (HTTP {response.status_code})"
                )
            if response.status_code >= 400:
                status = response.status_code
                raise UserError(f"server at {self.base_url} rejected {path} (HTTP {status}): {error_message(response)}")
            try:
                body = response.json()
            except ValueError:
                problem = "the reply was not JSON"
                continue
            return dict(body)
        raise UserError(
            f"OpenAI-compatible server at {self.base_url} unreachable after {tries} tries ({problem}); "
            "check that it is running (jitrl-bench serve) and policy.base_url"
        )

    def close(self) -> None:
        self._client.close()


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


def error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error", body) if isinstance(body, dict) else body
        message = error.get("message", error) if isinstance(error, dict) else error
        return str(message)[:300]
    except ValueError:
        return response.text[:300]
