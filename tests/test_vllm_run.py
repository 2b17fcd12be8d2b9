"""Runs through a real vLLM server (the CPU build in .venv-vllm): concurrency, and losing the server mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jitrl_bench.jitrl.memory import ExperienceMemory
from tests.conftest_vllm import VLLMServerInfo, vllm_server  # noqa: F401  (the shared server fixture)

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def server_overrides(info: VLLMServerInfo, mode: str) -> list[str]:
    return [
        "policy=openai", f"policy.base_url={info.base_url}", f"policy.model={info.model}",
        f"policy.tokenizer={info.tokenizer}", f"policy.mode={mode}", "policy.max_retries=1", "policy.backoff_s=0.2",
        "run.progress=false",
    ]  # fmt: skip


SECRET = "sk-test-not-a-real-key-1234"


def jitrl_bench(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "JITRL_TEST_API_KEY": SECRET}
    return subprocess.Popen(
        [sys.executable, "-m", "jitrl_bench", "run", *args], cwd=REPO, text=True, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def rows_of(run_dir: Path) -> list[dict]:
    path = run_dir / "episodes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_two_episodes_through_the_server_with_concurrency(vllm_server: VLLMServerInfo, tmp_path: Path) -> None:  # noqa: F811
    run_dir = tmp_path / "served"
    proc = jitrl_bench(*server_overrides(vllm_server, "score"), "run.episodes=2", "run.max_steps=3",
                       "run.concurrency=2", "policy.api_key_env=JITRL_TEST_API_KEY", f"run.dir={run_dir}")  # fmt: skip
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
    written = [p for p in run_dir.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert written == [] and SECRET not in out + err  # the key is read from the environment, never stored


def test_server_lost_mid_run_is_one_error_and_the_run_resumes(vllm_server: VLLMServerInfo, tmp_path: Path) -> None:  # noqa: F811
    run_dir = tmp_path / "lost"
    args = [*server_overrides(vllm_server, "choice"), "run.episodes=4", "run.max_steps=4", f"run.dir={run_dir}"]
    proc = jitrl_bench(*args)
    deadline = time.monotonic() + 300
    while not rows_of(run_dir) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rows_of(run_dir), "no episode finished before the server was stopped"
    vllm_server.server.stop()
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        vllm_server.server.start()  # same port: the shared server is back for the other tests
    assert proc.returncode == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and vllm_server.base_url in lines[0] and "Traceback" not in err
    done_before = {(r["agent"], r["episode"]) for r in rows_of(run_dir)}
    assert 1 <= len(done_before) < 8
    resumed = jitrl_bench(*args)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    rows = rows_of(run_dir)
    assert sorted((r["agent"], r["episode"]) for r in rows) == [(a, e) for a in ("jitrl", "static") for e in range(4)]
    committed = {r["episode_uid"] for r in rows}
    memory = ExperienceMemory(run_dir / "memory" / "jitrl", 384, gamma=0.9, committed=committed.__contains__)
    assert len(memory) == sum(r["steps"] for r in rows if r["agent"] == "jitrl")
