"""ScienceWorld and TextWorld Express through the CLI: the simulator's own record of what each episode played (its
task, split and instance), the benchmark's splits kept apart, and the candidate cap counted. (Each env's gold path
is replayed to its win and full score by test_contract.py's check_env_adapter.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.envs.scienceworld import ScienceWorldBackend
from jitrl_bench.envs.textworld_express import TextWorldExpressBackend

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
