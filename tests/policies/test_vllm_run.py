"""Runs through a real vLLM server (the CPU build in .venv-vllm): concurrency, and losing the server mid-run."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from jitrl_bench.contract import Prompt
from jitrl_bench.errors import UserError
from jitrl_bench.memory.store import ExperienceMemory
from jitrl_bench.policies.openai import OpenAIPolicyConfig
from tests.conftest_vllm import CANDIDATES, OBSERVATION, SYSTEM, VLLMServerInfo
from tests.policies.link import Link

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def server_overrides(info: VLLMServerInfo, mode: str) -> list[str]:
    return [
        "policy=openai", f"policy.base_url={info.base_url}", f"policy.model={info.model}",
        f"policy.tokenizer={info.tokenizer}", f"policy.mode={mode}", "policy.max_retries=1", "policy.backoff_s=0.2",
        "run.progress=false", f"policy.api_key_env={info.api_key_env}",
    ]  # fmt: skip


def jitrl_bench(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jitrl_bench", "run", *args], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def rows_of(run_dir: Path) -> list[dict]:
    path = run_dir / "episodes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_two_episodes_through_the_server_with_concurrency(vllm_server: VLLMServerInfo, tmp_path: Path) -> None:
    run_dir = tmp_path / "served"
    proc = jitrl_bench(*server_overrides(vllm_server, "score"), "run.episodes=2", "run.max_steps=2",
                       "run.concurrency=2", f"run.dir={run_dir}")  # fmt: skip
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    rows = rows_of(run_dir)
    assert sorted((r["agent"], r["episode"]) for r in rows) == [
        ("jitrl", 0),
        ("jitrl", 1),
        ("static", 0),
        ("static", 1),
    ]
    assert all(r["policy"] == vllm_server.model and r["tokens"] > 0 and r["status"] == "ok" for r in rows)
    step = json.loads((run_dir / "steps" / "tw-simple-7" / "jitrl" / "1.jsonl").read_text().splitlines()[0])
    assert step["decision"]["neighbours"] and all(v < 0 for v in step["decision"]["z"])
    memory = ExperienceMemory(run_dir / "memory" / "jitrl", 384, gamma=0.9)
    assert len(memory) == sum(r["steps"] for r in rows if r["agent"] == "jitrl")
    assert (run_dir / "summary.csv").exists()
    secret = os.environ[vllm_server.api_key_env]  # the server's random key
    written = [p for p in run_dir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert written == [] and secret not in out + err  # the key is read from the environment, never stored
    log = vllm_server.log_path
    assert log.is_file() and secret not in log.read_text(errors="replace")  # nor by the server (not on its argv)


class KeepScoring(threading.Thread):
    """Scores the shared prompt through an OpenAIPolicy until a call fails (the server went away): one error after
    its 3 tries."""

    def __init__(self, info: VLLMServerInfo) -> None:
        super().__init__(daemon=True)
        self.policy = OpenAIPolicyConfig(base_url=info.base_url, model=info.model, tokenizer=info.tokenizer,
                                         api_key_env=info.api_key_env, max_retries=2, backoff_s=0.2,
                                         timeout_s=30.0).make()  # fmt: skip
        self.calls, self.errors = 0, list[UserError]()
        self.start()
        deadline = time.monotonic() + 60
        while self.calls == 0 and not self.errors and time.monotonic() < deadline:
            time.sleep(0.1)

    def run(self) -> None:
        prompt = Prompt.chat(SYSTEM, OBSERVATION)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                self.policy.score(prompt, CANDIDATES)
                self.calls += 1
            except UserError as error:
                self.errors.append(error)
                return


def test_server_lost_mid_run_is_one_error_and_the_run_resumes(vllm_server: VLLMServerInfo, tmp_path: Path) -> None:
    """The run and a client beside it reach the shared server through a link that is cut mid-run (tests/policies/
    link.py: what a client sees when its server dies, reads ended and connections refused) and restored for the
    resume, on the same URL. The server itself stays up, so no other test pays for a restart."""
    upstream = httpx.URL(vllm_server.base_url)
    link = Link((upstream.host, upstream.port or 80))
    lost = dataclasses.replace(vllm_server, base_url=f"http://127.0.0.1:{link.port}/v1")
    run_dir = tmp_path / "lost"
    args = [*server_overrides(lost, "choice"), "run.episodes=3", "run.max_steps=3", f"run.dir={run_dir}"]
    proc = jitrl_bench(*args)
    deadline = time.monotonic() + 300
    while not rows_of(run_dir) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rows_of(run_dir), "no episode finished before the server was lost"
    scorer = KeepScoring(lost)  # a client scoring in a loop beside the run: the same outage for both
    link.cut()
    try:
        _, err = proc.communicate(timeout=300)
        scorer.join()
    finally:
        link.restore()  # same port: the resumed run reaches the server again
    assert scorer.calls >= 1 and len(scorer.errors) == 1  # the client's own retries, then one error naming the URL
    assert lost.base_url in str(scorer.errors[0]) and "3 tries" in str(scorer.errors[0])
    assert proc.returncode == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lost.base_url in lines[0] and "Traceback" not in err
    done_before = {(r["agent"], r["episode"]) for r in rows_of(run_dir)}
    assert 1 <= len(done_before) < 6
    resumed = jitrl_bench(*args)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    rows = rows_of(run_dir)
    assert sorted((r["agent"], r["episode"]) for r in rows) == [(a, e) for a in ("jitrl", "static") for e in range(3)]
    committed = {r["episode_uid"] for r in rows}
    memory = ExperienceMemory(run_dir / "memory" / "jitrl", 384, gamma=0.9, committed=committed.__contains__)
    assert len(memory) == sum(r["steps"] for r in rows if r["agent"] == "jitrl")
    link.cut()


def test_serve_prints_a_working_override_and_its_key(
    vllm_server: VLLMServerInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`jitrl-bench serve`, as the session's server is started (tests/conftest_vllm.py, which also stops it with
    Ctrl-C and fails unless serve then exits 0): it is found through what serve printed, its random key too, without
    which it refuses requests (mutant that fails it, by reading: no VLLM_API_KEY given)."""
    override, key = vllm_server.override, vllm_server.api_key
    assert override.startswith("policy=openai policy.base_url=http://127.0.0.1:"), vllm_server.printed
    assert len(key) >= 20 and f"policy.api_key_env={vllm_server.api_key_env}" in override, vllm_server.printed
    assert f"{vllm_server.api_key_env}={key} jitrl-bench run {override}" in vllm_server.printed
    assert vllm_server.log_path.is_file() and "vllm" in vllm_server.log_path.read_text(errors="replace").lower()
    base_url = override.split("policy.base_url=")[1].split()[0]
    keyless = httpx.post(f"{base_url}/completions", json={"model": vllm_server.model, "prompt": "Hi"})
    assert keyless.status_code == 401
    monkeypatch.setenv("JITRL_TEST_SERVE_KEY", key)
    policy = OpenAIPolicyConfig(
        base_url=base_url, model=vllm_server.model, tokenizer=vllm_server.tokenizer, api_key_env="JITRL_TEST_SERVE_KEY"
    ).make()
    scores = policy.score(Prompt.chat("Play.", "You are in a room."), ["go north", "look"]).z
    assert scores.shape == (2,) and (scores < 0).all()
