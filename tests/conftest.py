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


# `make test` runs the suite on two processes (pytest-xdist, --dist loadgroup). Tests that start Ray or vLLM, or look
# for their processes machine-wide (a Ray worker left, a vLLM server outliving its run), would see each other's: each
# family runs in one process, one test at a time; everything else is spread over both.
MACHINE_WIDE = {
    "ray": ("test_cluster.py", "test_webarena_ray.py", "test_sweep_submitit.py"),
    "vllm": ("test_served_path.py", "test_vllm_run.py", "test_openai_client.py", "test_vllm.py"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for group, files in MACHINE_WIDE.items():
            if item.path.name in files:
                item.add_marker(pytest.mark.xdist_group(group))
