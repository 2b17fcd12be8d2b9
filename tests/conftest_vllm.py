"""One real vLLM server (the CPU build in .venv-vllm, SmolLM2-135M-Instruct in float32) for the whole test session.

tests/conftest.py registers the fixture for every test module; ask for it by name:

    def test_something(vllm_server: VLLMServerInfo) -> None:
        policy = OpenAIPolicyConfig(base_url=vllm_server.base_url, model=vllm_server.model, tokenizer="smollm2",
                                    api_key_env=vllm_server.api_key_env).make()

Every module that uses the fixture shares the same server process (started on first use, stopped when the last user
is torn down). Tests that stop the server must start it again on the same port (`restart(info.server)`); a restarted
server may run another --logprobs-mode, which clients must not notice. Only a missing .venv-vllm skips (`make test`
creates it with scripts/setup_vllm.sh).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from jitrl_bench.contract import Prompt
from jitrl_bench.policies.choice import log_softmax, option_labels, option_prompt
from jitrl_bench.policies.server import KEY_ENV, VLLMServer

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
SKIP_REASON = ".venv-vllm is missing: run `bash scripts/setup_vllm.sh` (make test does it)"
MODEL = "smollm2"


@dataclass(frozen=True)
class VLLMServerInfo:
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the served model name
    tokenizer: str  # what to give policy.tokenizer
    server: VLLMServer  # for tests that stop / restart it
    api_key_env: str = KEY_ENV  # policy.api_key_env: the server's random key is in this process's environment


def require_vllm_venv() -> Path:
    """The .venv-vllm interpreter, or skip the test (the one allowed reason)."""
    if not VLLM_PYTHON.is_file():
        pytest.skip(SKIP_REASON)
    return VLLM_PYTHON


_lock = threading.Lock()
_server: VLLMServer | None = None
_users = 0


def _acquire() -> VLLMServer:
    global _server, _users
    with _lock:
        if _server is None:
            # Eager (--enforce-eager): up in about 40 s instead of 120 s. The compiled engine, the default users get,
            # is started by `bench policy` in tests/policies/test_served_path.py.
            server = VLLMServer(
                MODEL, python=require_vllm_venv(), dtype="float32", startup_timeout_s=420, enforce_eager=True
            )
            server.start()
            atexit.register(server.stop)
            os.environ[KEY_ENV] = server.api_key  # for clients here and the jitrl-bench runs the tests start
            _server = server
        _users += 1
        return _server


def restart(server: VLLMServer) -> None:
    """Bring the shared server back on its port after a test stopped it (eager, as it started)."""
    server.start()


def _release() -> None:
    global _server, _users
    with _lock:
        _users -= 1
        if _users == 0 and _server is not None:
            _server.stop()
            _server = None


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[VLLMServerInfo]:
    """A running vLLM OpenAI-compatible server for SmolLM2-135M-Instruct."""
    server = _acquire()
    try:
        yield VLLMServerInfo(base_url=server.base_url, model=server.model_name, tokenizer=MODEL, server=server)
    finally:
        _release()


# ---- shared by the vLLM tests: one realistic prompt and the transformers reference --------------------------------

SYSTEM = "You are playing a text adventure game. Reply with exactly one command from the list of valid actions."
OBSERVATION = """Kitchen
You are standing in a small, dusty kitchen. A wooden table stands in the middle of the room, and on it lies a red key
next to a half-eaten loaf of bread. A rusty stove leans against the east wall. To the north, a narrow corridor leads
into darkness; to the south you can see the garden through an open archway. A heavy oak door is set into the west wall.

Your score is 10 out of 350, in 23 moves. You are carrying a brass lantern and a folded map.
What do you do?"""
CANDIDATES = [
    "go north",
    "go south",
    "take the red key from the table",
    "open door",
    "eat bread",
    "examine stove",
    "look",
    "inventory",
    "go",
    "wait",
]
# Moves the greedy choice away from the model's own favourite and spreads the rest.
BIAS = [-1.0, 0.5, 1.5, -2.0, 0.0, 3.0, -0.5, 1.0, 2.0, -3.0]


def option_reference(hf: Any, prompt: Prompt, candidates: list[str]) -> np.ndarray:
    """The transformers model's own log-probs of the option tokens after the choice prompt, renormalised over them."""
    labels = option_labels(len(candidates))
    ids = hf.prompt_ids(option_prompt(prompt, candidates, labels))
    with torch.inference_mode():
        logits = hf.model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    logprobs = torch.log_softmax(logits, dim=-1)[hf.tokens.single_token_ids(labels)]
    return log_softmax(logprobs.numpy())
