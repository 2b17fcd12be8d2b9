"""ALFWorld on its own engine (TextWorld's PDDL env, fast-downward, ALFWorld's naming) over the project's own games:
each game is solvable by ALFWorld's planner and won by its plan; the reader takes the official folder layout and
refuses what is not a game in one line; CLI runs play it and record which game each episode played. The engine runs
in processes of its own (tests/envs/text/alfworld_checks.py, the CLI), as in a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jitrl_bench.envs.text.alfworld_games import write_sample

REPO = Path(__file__).resolve().parents[3]


def test_the_engine_plays_every_task_type_and_refuses_what_is_not_a_game(tmp_path: Path) -> None:
    """The checks in alfworld_checks.py: every task type in every split won by the planner's plan (mutant tried:
    games without their canContain facts fails it), state fields from the engine's facts, the seed picking the split's
    game, and crafted folders refused in one line each."""
    data = write_sample(tmp_path / "data", per_type=2)
    (tmp_path / "scratch").mkdir()
    command = [sys.executable, "-m", "tests.envs.text.alfworld_checks", str(data), str(tmp_path / "scratch")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "alfworld checks passed" in done.stdout, done.stdout + done.stderr[-3000:]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jitrl_bench", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.mark.slow
def test_a_cli_run_learns_on_train_and_is_tested_on_unseen_rooms(tmp_path: Path) -> None:
    """`run.protocol=train_test`: the train split's games, then ALFWorld's valid_unseen games with the memory the train
    split left; every episode's record names the game the engine loaded."""
    run_dir = tmp_path / "r"
    tasks = ("look_at_obj_in_light", "pick_cool_then_place_in_recep")
    args = ["env=alfworld", f"env.task_types=[{','.join(tasks)}]", "run.protocol=train_test",
            "policy=uniform", "run.episodes=2", "run.test_episodes=1", "run.max_steps=6", "run.progress=false",
            f"run.dir={run_dir}"]  # fmt: skip
    done = cli("run", *args)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    for part, split, trials, episodes in (("train", "train", "trial_00", 2), ("test", "valid_unseen", "trial_20", 1)):
        rows = [json.loads(line) for line in (run_dir / part / "episodes.jsonl").read_text().splitlines()]
        assert sorted((r["task"], r["agent"]) for r in rows) == sorted(
            (t, a) for t in tasks for a in ("jitrl", "static") for _ in range(episodes)
        )
        for row in rows:
            assert row["env"] == "alfworld" and row["max_score"] == 1.0
            assert row["artifacts"]["games"] == "sample" and row["artifacts"]["split"] == split
            assert row["artifacts"]["game"].startswith(f"{row['task']}-sample/{trials}")
    first = json.loads(next((run_dir / "train" / "steps").rglob("*.jsonl")).read_text().splitlines()[0])
    assert any(c.startswith("go to ") for c in first["decision"]["candidates"])  # the engine's admissible commands


def test_official_games_without_a_folder_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    done = cli("run", "env=alfworld", "env.games=official", "policy=uniform", "run.episodes=1", "run.progress=false",
               f"run.dir={tmp_path / 'r'}")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "env.games=official needs ALFWorld's files" in " ".join((done.stdout + done.stderr).split())


def test_doctor_checks_the_planner_without_loading_it_in_its_own_process() -> None:
    """`doctor` (and every test that calls `checks()` in a pytest worker) probes the planner library in a child: the
    old in-process probe loaded and unloaded a copy each time, and a process that unloads two copies segfaults (it
    crashed a CI worker). Mutant tried: the in-process `close_lib(load_lib())` probe: this process dies of signal
    11."""
    script = "from jitrl_bench.doctor import env_checks\nfor _ in range(3): rows = env_checks()\n" \
             "row = next(r for r in rows if r.part == 'env=alfworld'); print(row.ok, row.detail)"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip() == "True alfworld and fast-downward (planner loads)"
