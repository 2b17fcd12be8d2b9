"""`run.protocol`: train_test learns on one split and scores the other with memory frozen; stream measures forward
transfer and forgetting. Through the CLI, with evidence from the files each split leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from jitrl_bench.cli import app

FAST = ["policy=uniform", "run.progress=false", "run.max_steps=4"]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_test_scores_unseen_seeds_with_the_train_memory_frozen(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["run.episodes=3", "run.protocol=train_test", "run.test_episodes=2"]
    code, output = cli("run", *FAST, *args, f"run.dir={run}")
    assert code == 0, output
    summary = pd.read_csv(run / "summary.csv")
    assert summary.split.tolist() == ["train", "train", "test", "test"]
    assert dict(zip(summary.split, summary.seeds, strict=True)) == {"train": "0-2", "test": "3-4"}
    comparison = pd.read_csv(run / "comparison.csv")
    assert comparison.split.tolist() == ["train", "test"]

    train, test = lines(run / "train" / "episodes.jsonl"), lines(run / "test" / "episodes.jsonl")
    train_uids = {r["episode_uid"] for r in train if r["agent"] == "jitrl"}
    trained = lines(run / "train" / "memory" / "jitrl" / "entries.jsonl")
    assert len(trained) == sum(int(str(r["steps"])) for r in train if r["agent"] == "jitrl")
    read = lines(run / "test" / "memory" / "jitrl" / "entries.jsonl")  # what the test split read: the train's, no more
    assert {r["episode"] for r in read} <= train_uids and len(read) == len(trained)
    assert [r["state"] for r in read] == [r["state"] for r in trained]
    assert all(r["episode"] not in {e["episode_uid"] for e in test} for r in read)
    steps = lines(next((run / "test" / "steps").rglob("jitrl/0.jsonl")))
    assert any(s["decision"]["neighbours"] for s in steps)  # the frozen memory was read, not ignored


def test_train_test_holds_out_tasks_and_refuses_a_split_that_leaves_none(tmp_path: Path) -> None:
    run = tmp_path / "held"
    args = [*FAST, "run.episodes=2", "env.seeds=[7,11]", "run.protocol=train_test", "run.test_episodes=1"]
    code, output = cli("run", *args, "run.test_tasks=[tw-simple-11]", "memory.partition_by=[]", f"run.dir={run}")
    assert code == 0, output
    summary = pd.read_csv(run / "summary.csv")
    assert set(zip(summary.split, summary.task, strict=True)) == {("train", "tw-simple-7"), ("test", "tw-simple-11")}

    bad = tmp_path / "bad"
    code, output = cli("run", *args, "run.test_tasks=[tw-simple-7,tw-simple-11]", f"run.dir={bad}")
    assert code == 2 and "leaves no task to train on" in output, output
    assert not bad.exists()  # refused before anything was written or loaded
    code, output = cli("run", *args, "run.test_tasks=[tw-simple-11]", f"run.dir={bad}")  # task partitions by default
    assert code == 2 and "add memory.partition_by=[]" in output, output
    assert not bad.exists()


def test_stream_gives_transfer_and_forgetting_with_their_known_values(tmp_path: Path) -> None:
    run = tmp_path / "stream"
    code, output = cli("run", *FAST, "run.episodes=3", "env.seeds=[7,11]", "run.protocol=stream", f"run.dir={run}")
    assert code == 0, output
    table = pd.read_csv(run / "stream.csv").set_index(["task", "agent"])
    # static learns nothing and draws the same actions in every phase: no transfer, no forgetting, exactly
    assert table.loc[("tw-simple-7", "static"), "transfer"] == 0
    assert table.loc[("tw-simple-11", "static"), "transfer"] == 0
    assert table.loc[("tw-simple-7", "static"), "forgetting"] == 0
    # the first task has nothing before it: the stream and scratch play it identically
    assert table.loc[("tw-simple-7", "jitrl"), "transfer"] == 0
    assert table.loc[("tw-simple-7", "jitrl"), "forgetting_pairs"] == 3  # replayed on its 3 seeds
    assert pd.isna(table.loc[("tw-simple-11", "jitrl"), "forgetting"])  # the last task is not replayed
    replay = lines(run / "replay" / "episodes.jsonl")
    assert {r["task"] for r in replay} == {"tw-simple-7"}
    stream_memory = lines(run / "stream" / "memory" / "jitrl" / "entries.jsonl")
    assert {r["task"] for r in stream_memory} == {"tw-simple-7", "tw-simple-11"}  # one memory over both tasks
    assert "forward transfer" in (run / "summary.md").read_text()
