"""The path a served LLM takes, through `jitrl-bench run` as a user types it: with policy.mode=choice every decision's
bias Â/β is added inside the engine (vLLM in process, and a vLLM server over HTTP), and the trace says so. Each run
is stopped with SIGTERM mid-way (what `timeout` and SLURM send), and the in-process one also with kill -9: it must
leave no engine or server process behind, and the same command must resume it with every episode played once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from jitrl_bench.memory.store import ExperienceMemory
from tests.conftest_vllm import VLLM_PYTHON, require_vllm_venv
from tests.processes import rows_of, session_processes, start, terminate, terminate_after_first_episode, vllm_servers

pytestmark = pytest.mark.slow
EPISODES = 2


def check_engine_traces(run_dir: Path, agents: tuple[str, ...] = ("jitrl", "static")) -> None:
    rows = rows_of(run_dir)
    assert sorted((r["agent"], r["episode"]) for r in rows) == [(a, e) for a in agents for e in range(EPISODES)]
    # at least one engine call per decision (a client that probes its server once counts the probe too)
    assert all(r["status"] == "ok" and r["llm_calls"] >= r["steps"] > 0 for r in rows)
    beta = float(OmegaConf.load(run_dir / "config.yaml").agent.beta)
    biased = 0
    for r in rows:
        lines = (run_dir / "steps" / r["task"] / r["agent"] / f"{r['episode']}.jsonl").read_text().splitlines()
        for decision in (json.loads(line)["decision"] for line in lines):
            # "engine" only when the engine's own post-bias log-probs showed the bias (engine_evidence.py); z comes
            # from the engine without a bias and z' from its processed log-probs with it, so z' - z is what the engine
            # added, not arithmetic on what was sent. Mutants tried by hand (each fails the run, so the test):
            # ChoiceLogitsProcessor.apply returns the logits unchanged; OpenAIPolicy.choose sends no logit_bias.
            assert decision["bias_applied"] == "engine", decision
            z, z_prime, adv = (np.array(decision[k]) for k in ("z", "z_prime", "advantage"))
            shift = (z_prime - z) - (adv / beta if r["agent"] == "jitrl" else 0)
            np.testing.assert_allclose(shift - shift[0], 0, atol=1e-3)  # the engine added exactly Â/β
            biased += r["agent"] == "jitrl" and bool(np.any(adv != 0))
    assert biased > 0, "memory must move some decision"
    committed = {r["episode_uid"] for r in rows}
    memory = ExperienceMemory(run_dir / "memory" / "jitrl", 384, gamma=0.9, committed=committed.__contains__)
    assert len(memory) == sum(r["steps"] for r in rows if r["agent"] == "jitrl")


def test_vllm_in_process_choice_applies_the_bias_in_the_engine(tmp_path: Path) -> None:
    require_vllm_venv()
    run_dir = tmp_path / "in-process"
    command = [str(VLLM_PYTHON.parent / "jitrl-bench"), "run", "policy=vllm", "policy.mode=choice",
               "policy.enforce_eager=true",
               f"run.episodes={EPISODES}", "run.max_steps=4", f"run.dir={run_dir}"]  # fmt: skip
    err = terminate_after_first_episode(start(command), run_dir)
    assert len(err.strip().splitlines()) == 1, f"only our own line on the terminal, got:\n{err}"
    kill_9_with_its_engine_up(start(command))
    resumed = start(command)
    _, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err
    assert err.strip() == "", f"library output leaked to the terminal:\n{err}"  # it is in run.log
    log = (run_dir / "run.log").read_text()
    assert "vllm" in log.lower() and "Enforce eager set" in log  # vLLM's own config check says it runs eager
    check_engine_traces(run_dir)


def kill_9_with_its_engine_up(proc: subprocess.Popen[str]) -> None:
    """kill -9 of a run as soon as its in-process engine core exists (vLLM is still loading it): nothing of the run's
    session may be left 60 s later. vLLM forks its engine core itself, so only the watcher (`children.watched`) can
    end it. Mutant (tried): no watcher: the engine core, its worker and the resource tracker still ran 60 s after."""
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if any("EngineCore" in line for line in session_processes(proc.pid)):
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before its engine core was seen"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session_processes(proc.pid) == [], "kill -9 of the run left its engine behind"


def test_server_auto_choice_applies_the_bias_in_the_server(tmp_path: Path) -> None:
    require_vllm_venv()
    run_dir = tmp_path / "server"
    command = [sys.executable, "-m", "jitrl_bench", "run", "policy=openai", "policy.mode=choice", "policy.server=auto",
               "policy.enforce_eager=true",
               f"run.episodes={EPISODES}", "run.max_steps=4", f"run.dir={run_dir}"]  # fmt: skip
    before = vllm_servers()
    terminate_after_first_episode(start(command), run_dir)
    assert vllm_servers() <= before, "the run's own vLLM server outlived it"
    resumed = start(command)
    _, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err
    assert vllm_servers() <= before
    check_engine_traces(run_dir)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_bench_policy_stopped_by_a_signal_leaves_no_server(tmp_path: Path, sig: signal.Signals) -> None:
    """`timeout 590 jitrl-bench bench policy` once left its vLLM server running (770 MB) after the bench was gone.
    The signal lands while the bench's server is still loading, the phase between launching a process and holding
    it in a `with` block (`VLLMServer.start` stops it itself); a SIGTERM with a server up is the served run's test
    above. kill -9 gives the bench no chance to stop anything: the server, in a session of its own, gets SIGTERM from
    the kernel when its parent dies (jitrl_bench/children.py). Mutant tried: without `preexec_fn=end_with_parent()`
    the kill-9 case finds the server alive after 60 s.
    Without the guard (`guarded`) vLLM's engine core outlived its API server once, by the timing of the kill;
    tests/test_children.py checks the guard on a stand-in that always forks first."""
    require_vllm_venv()
    before = vllm_servers()
    command = [sys.executable, "-m", "jitrl_bench", "bench", "policy", "--full", "--k", "2", "--repeats", "1",
               "--concurrency", "1", "--out", str(tmp_path / "policy.csv")]  # fmt: skip
    proc = start(command)
    deadline = time.monotonic() + 300
    while not vllm_servers() - before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # the bench times transformers first, then launches its server
    assert vllm_servers() - before, f"the bench never started its server: {proc.poll()}"
    time.sleep(3)  # into the wait for health: the server takes far longer than this to load (30 s and more)
    sessions = {os.getsid(pid) for pid in vllm_servers() - before}  # the guard's, with the server and its engine
    if sig == signal.SIGTERM:
        terminate(proc)
    else:
        proc.kill()
        proc.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while any(session_processes(sid) for sid in sessions) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [session_processes(sid) for sid in sessions] == [[]] * len(sessions)
    assert vllm_servers() <= before
