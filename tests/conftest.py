"""Fixtures shared across the suite: real games and the real embedder, loaded once per session."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import FrameType

import pytest

from jitrl_bench.jitrl.embed import Embedder, EmbedderConfig
from tests.conftest_vllm import vllm_server  # noqa: F401  (the shared vLLM server, started by the first test using it)

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (`timeout`, a CI limit) stops the suite as Ctrl-C does: pytest then tears down the session fixtures (the
    vLLM server, engines, Ray heads, browsers) and atexit handlers run. Python's default for SIGTERM is to die at once,
    which left a session's vLLM server running for half an hour after a `timeout`."""
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The default embedder (all-MiniLM-L6-v2 from its PyPI package)."""
    return EmbedderConfig().make()
