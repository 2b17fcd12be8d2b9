"""One real vLLM server (the CPU build in .venv-vllm, SmolLM2-135M-Instruct in float32) for the whole test session.

tests/conftest.py registers the fixture for every test module; ask for it by name:

    def test_something(vllm_server: VLLMServerInfo) -> None:
        policy = OpenAIPolicyConfig(base_url=vllm_server.base_url, model=vllm_server.model, tokenizer="smollm2",
                                    api_key_env=vllm_server.api_key_env).make()

Every module that uses the fixture shares the same server process (started on first use, stopped at the end of the
session). No test stops it: the outage test cuts a link to it instead (tests/policies/link.py). Only a missing
.venv-vllm skips (`make test` creates it with scripts/setup_vllm.sh).
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from jitrl_bench.children import end_with_parent
from jitrl_bench.contract import Prompt
from jitrl_bench.policies.choice import log_softmax, option_labels, option_prompt
from jitrl_bench.policies.server import KEY_ENV
from tests.processes import as_at_a_terminal

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
SKIP_REASON = ".venv-vllm is missing: run `bash scripts/setup_vllm.sh` (make test does it)"
SERVE = (sys.executable, "-m", "jitrl_bench", "serve", "policy=vllm", "policy.dtype=float32",
         "policy.enforce_eager=true")  # fmt: skip
"""The session's server, started as a user does. Eager (--enforce-eager): up in about 20 s instead of 45 s; float32,
as the transformers reference the tests compare with. The compiled engine, the default users get, is the processed
one of tests/policies/test_vllm.py."""


@dataclass(frozen=True)
class VLLMServerInfo:
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the served model name
    tokenizer: str  # what to give policy.tokenizer
    api_key: str  # the key `jitrl-bench serve` drew and printed; also in this process's environment (api_key_env)
    log_path: Path  # the server's log, where serve said it is
    printed: str  # what serve printed once the server was up, its override line last
    override: str  # that line's override: `jitrl-bench run <override>` reaches the server
    api_key_env: str = KEY_ENV


def require_vllm_venv() -> Path:
    """The .venv-vllm interpreter, or skip the test (the one allowed reason)."""
    if not VLLM_PYTHON.is_file():
        pytest.skip(SKIP_REASON)
    return VLLM_PYTHON


def _ctrl_c_and_end_with_us() -> Callable[[], None]:
    """SIGINT acts as at a terminal, and serve gets one (Ctrl-C) when this worker dies without its teardown (a
    crashed pytest-xdist worker runs neither fixtures nor atexit: its server would outlive the suite)."""
    on_death = end_with_parent(signal.SIGINT)

    def in_child() -> None:
        as_at_a_terminal()
        if on_death is not None:
            on_death()

    return in_child


class _Serve:
    """`jitrl-bench serve` in a session of its own, its output drained by a thread (read, not a pipe left to fill)."""

    def __init__(self) -> None:
        require_vllm_venv()
        env = {k: v for k, v in os.environ.items() if k != KEY_ENV}  # serve draws a key and prints it
        self.proc = subprocess.Popen(SERVE, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True, preexec_fn=_ctrl_c_and_end_with_us())  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        atexit.register(self.stop)  # a suite that dies without its teardown still stops it

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def info(self, timeout_s: float = 420) -> VLLMServerInfo:
        deadline = time.monotonic() + timeout_s
        while not any("jitrl-bench run " in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"jitrl-bench serve gave no override (exit {self.proc.poll()}):\n" + "\n".join(self.lines))
            time.sleep(0.1)
        printed = "\n".join(self.lines)
        given, override = next(line for line in self.lines if "jitrl-bench run " in line).split("jitrl-bench run ", 1)
        settings = dict(part.split("=", 1) for part in override.split()[1:])
        key = given.split(f"{KEY_ENV}=", 1)[-1].strip()
        log = next(line for line in self.lines if "(log: " in line).rsplit("(log: ", 1)[1].removesuffix(")")
        os.environ[KEY_ENV] = key  # for clients here and the jitrl-bench runs the tests start
        return VLLMServerInfo(base_url=settings["policy.base_url"], model=settings["policy.model"],
                              tokenizer=settings["policy.tokenizer"], api_key=key, log_path=Path(log),
                              printed=printed, override=override.strip())  # fmt: skip

    def stop(self) -> int | None:
        """Ctrl-C, as a user stops it; SIGKILL to its session only if it does not stop within two minutes."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reader.join(10)
        return self.proc.returncode


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[VLLMServerInfo]:
    """A running vLLM OpenAI-compatible server for SmolLM2-135M-Instruct, started by `jitrl-bench serve` and stopped
    at the end with Ctrl-C, which must end serve with exit 0 (tests/policies/test_vllm_run.py reads what it
    printed)."""
    serve = _Serve()
    yield serve.info()
    code = serve.stop()
    stopped = any("stopping the server" in line for line in serve.lines)
    assert code == 0 and stopped, f"jitrl-bench serve on Ctrl-C: exit {code}, printed {serve.lines}"


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
