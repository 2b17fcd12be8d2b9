"""ScienceWorld and TextWorld Express through the CLI: the simulator's own record of what each episode played (its
task, split and instance), the benchmark's splits kept apart, and the candidate cap counted. (Each env's gold path
is replayed to its win and full score by test_contract.py's check_env_adapter.)"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.envs.text.scienceworld import ScienceWorldBackend
from jitrl_bench.envs.text.textworld_express import TextWorldExpressBackend
from tests.processes import rows_of, session_processes, start

FAST = ["policy=uniform", "run.progress=false", "run.max_steps=3"]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def simulator_splits(backend: TextWorldExpressBackend | ScienceWorldBackend) -> dict[str, list[int]]:
    """The splits as the simulator lists them (through the backend: the library's own objects close twice)."""
    try:
        return backend.splits()
    finally:
        backend.close()


def test_textworld_express_train_test_learns_on_the_train_fold_and_scores_the_test_fold(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["env=textworld_express", "run.episodes=2", "run.protocol=train_test", "run.test_episodes=2"]
    code, output = cli("run", *FAST, *args, f"run.dir={run}")
    assert code == 0, output
    folds = simulator_splits(TextWorldExpressBackend("coin", "", "train", None))
    assert not set(folds["train"]) & set(folds["test"]) and not set(folds["dev"]) & set(folds["test"])
    for split in ("train", "test"):
        for record in lines(run / split / "episodes.jsonl"):
            played = record["artifacts"]  # the simulator's generation properties, read after each reset
            assert played["split"] == split and played["game"] == "coin"
            assert int(played["instance"]) == folds[split][record["seed"]], record  # seed s plays the fold's s-th
    summary = pd.read_csv(run / "summary.csv")
    assert set(summary.split) == {"train", "test"}


@pytest.mark.slow
def test_scienceworld_plays_the_split_variation_of_each_seed_and_counts_the_candidates_cut(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["env=scienceworld", "env.tasks=[boil]", "env.max_candidates=40", "run.episodes=2", "run.baselines=[]"]
    code, output = cli("run", *FAST, *args, f"run.dir={run}")
    assert code == 0, output
    splits = simulator_splits(ScienceWorldBackend("boil", "train", None, ""))
    train = splits["train"]
    assert not set(train) & set(splits["test"]) and not set(splits["dev"]) & set(splits["test"])
    records = lines(run / "episodes.jsonl")
    assert len(records) == 2
    for record in records:
        played = record["artifacts"]  # the simulator's run history after each reset: its task and variation
        assert played["task"] == "boil" and played["split"] == "train"
        assert int(played["instance"]) == train[record["seed"]], record
    steps = [s for path in sorted((run / "steps").rglob("*.jsonl")) for s in lines(path)]
    assert steps and all(len(s["decision"]["candidates"]) == 40 and s["candidates_cut"] > 0 for s in steps)


@pytest.mark.slow
def test_kill_9_mid_run_leaves_no_simulator_behind_and_the_resume_equals_an_unbroken_run(tmp_path: Path) -> None:
    """The JVM dies with the process that started it (py4j's die-on-exit: its stdin closes); the resumed run's
    episodes equal those of a run never killed. And a simulator killed under a running command is an infrastructure
    failure: the episode is played again on a fresh JVM and the run ends whole. Mutants (tried): the simulator
    launched without die_on_exit leaves its JVM running in the killed command's session; `Simulator.revive` never
    restarting fails every later episode of the task."""
    budget = ["env=textworld_express", *FAST, "run.episodes=4", "run.max_steps=6"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert cli("run", *budget, f"run.dir={whole}")[0] == 0
    command = [sys.executable, "-m", "jitrl_bench", "run", *budget, f"run.dir={killed}"]
    proc = start(command)
    deadline = time.time() + 120
    while time.time() < deadline and len(rows_of(killed)) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= len(rows_of(killed)) < 8, "the kill must land in the middle of the run"
    deadline = time.time() + 30
    while time.time() < deadline and session_processes(proc.pid):
        time.sleep(0.2)
    assert session_processes(proc.pid) == [], "the simulator outlived the command"
    assert cli("run", *budget, f"run.dir={killed}")[0] == 0
    fields = ("task", "agent", "episode", "seed", "score", "steps", "success", "artifacts")

    def played(run: Path) -> list[tuple[object, ...]]:
        return sorted(tuple(json.dumps(r[f], sort_keys=True) for f in fields) for r in rows_of(run))

    assert played(killed) == played(whole) and len(played(whole)) == 8

    crashed = tmp_path / "crashed"
    proc = start([sys.executable, "-m", "jitrl_bench", "run", *budget, f"run.dir={crashed}"])
    deadline = time.time() + 120
    while time.time() < deadline and len(rows_of(crashed)) < 2:
        time.sleep(0.05)
    jvms = [int(line.split(":")[0]) for line in session_processes(proc.pid) if "java" in line]
    assert jvms, "no simulator found under the command"
    for pid in jvms:
        os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "simulator failed" in out + err
    assert played(crashed) == played(whole)
