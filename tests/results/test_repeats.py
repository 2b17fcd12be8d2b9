"""`run.repeats=K`: K replicas in one run directory, pass^k and consistency across them, intervals over replicas, and a
kill -9 in the middle of a replica that resumes to the tables of a run never killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from jitrl_bench.results.repeats import pass_hat_k, repeat_table

REPO = Path(__file__).resolve().parents[2]
ARGS = ["policy=uniform", "run.progress=false", "run.episodes=2", "run.max_steps=3", "run.repeats=3"]
TABLES = ("summary.csv", "repeats.csv", "comparison.csv")


def test_pass_hat_k_and_consistency_by_hand() -> None:
    # four episodes of three replicas: 3, 2, 0 and 1 successes
    successes = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=float)
    assert pass_hat_k(successes, 1) == pytest.approx((1 + 2 / 3 + 0 + 1 / 3) / 4)
    assert pass_hat_k(successes, 2) == pytest.approx((1 + 1 / 3) / 4)  # C(2,2)/C(3,2) = 1/3
    assert pass_hat_k(successes, 3) == pytest.approx(1 / 4)
    rows = [
        {"task": "t", "agent": "a", "episode": e, "repeat": r, "success": bool(successes[e, r]), "score": float(r),
         "status": "ok"}
        for e in range(4) for r in range(3)
    ]  # fmt: skip
    table = repeat_table(pd.DataFrame(rows)).iloc[0]
    assert table["pass^1"] == pytest.approx(0.5) and table["pass^3"] == pytest.approx(0.25)
    assert table.consistency == pytest.approx(0.5)  # episodes 0 and 2 agree across replicas, 1 and 3 do not
    assert (table.final5_mean, table.final5_min, table.final5_max) == (1.0, 0.0, 2.0)
    assert table.final5_sd == pytest.approx(1.0)
    partial = pd.DataFrame([row for row in rows if not (row["episode"] == 3 and row["repeat"] == 2)])
    assert repeat_table(partial).iloc[0]["items"] == 3  # an episode one replica has not finished is not an item


def run(run_dir: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "jitrl_bench", "run", *ARGS, f"run.dir={run_dir}"]
    log = open(run_dir.with_suffix(".log"), "ab")  # noqa: SIM115 - the child holds it; closed with the test's tmp_path
    return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_repeats_play_replicas_with_their_own_seeds_and_resume_after_kill(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    assert run(whole).wait(timeout=600) == 0, whole.with_suffix(".log").read_text()
    replicas = [whole / "repeats" / str(r) for r in range(3)]
    seeds = [yaml.safe_load((r / "config.yaml").read_text())["run"]["seed"] for r in replicas]
    assert seeds == [0, 2, 4]  # replica r starts at run.seed + r * run.episodes
    episodes = [pd.read_json(r / "episodes.jsonl", lines=True) for r in replicas]
    assert [sorted(set(e.seed)) for e in episodes] == [[0, 1], [2, 3], [4, 5]]
    assert not (whole / "episodes.jsonl").exists() and not (whole / "memory").exists()
    summary = pd.read_csv(whole / "summary.csv")
    assert set(summary.episodes) == {6} and summary.seeds.tolist() == ["0-5", "0-5"]
    assert "over the means of 3 replicas" in (whole / "summary.md").read_text()
    repeats = pd.read_csv(whole / "repeats.csv")
    assert {"pass^1", "pass^2", "pass^3", "consistency"} <= set(repeats.columns) and set(repeats["items"]) == {2}
    success = pd.concat(episodes).groupby("agent").success.mean()  # pass^1 is the success rate over replicas
    assert repeats.set_index("agent")["pass^1"].to_dict() == pytest.approx(success.to_dict())

    killed = tmp_path / "killed"
    proc = run(killed)
    second = killed / "repeats" / "1" / "episodes.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and not (second.exists() and second.read_text().count("\n") >= 1):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # in the middle of the second replica
    proc.wait(timeout=30)
    assert not (killed / "repeats" / "2").exists()
    resumed = run(killed)
    assert resumed.wait(timeout=600) == 0, killed.with_suffix(".log").read_text()
    for name in TABLES:
        assert (killed / name).read_text() == (whole / name).read_text(), name
    lines = [len((killed / "repeats" / str(r) / "episodes.jsonl").read_text().splitlines()) for r in range(3)]
    assert lines == [4, 4, 4]  # 2 agents × 2 episodes per replica, none twice
