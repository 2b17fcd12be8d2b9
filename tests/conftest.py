"""Fixtures shared across the suite: real games and the real embedder, loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jitrl_bench.jitrl.embed import Embedder, EmbedderConfig
from tests.conftest_vllm import vllm_server  # noqa: F401  (the shared vLLM server, started by the first test using it)

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The default embedder (all-MiniLM-L6-v2 from its PyPI package)."""
    return EmbedderConfig().make()
