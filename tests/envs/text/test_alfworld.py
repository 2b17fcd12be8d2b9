"""ALFWorld on its own engine (TextWorld's PDDL env, fast-downward, ALFWorld's naming) over the project's own games:
each game is solvable by ALFWorld's planner and won by its plan; the reader takes the official folder layout and
refuses what is not a game in one line; a CLI run plays it and records which game each episode played."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.envs.text.alfworld import ALFWorldConfig, game_files
from jitrl_bench.envs.text.alfworld_games import DATA_FOLDER, SPLITS, TASK_TYPES, problem, write_sample
from jitrl_bench.errors import UserError


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample(tmp_path_factory.mktemp("alfworld"), per_type=2)


def test_every_task_type_is_won_by_alfworlds_planner(data: Path) -> None:
    """The plan comes from the engine's planner (fast-downward) from the game's start; playing it must win with the
    full score. Mutant (tried): sample games without their canContain facts: the engine cannot play the goal, and this
    fails."""
    for split in SPLITS:
        config = ALFWorldConfig(task_types=list(TASK_TYPES), split=split, games="official", data_dir=str(data))
        for task in TASK_TYPES:
            env = config.make(task)
            plan = env.walkthrough()
            assert plan, f"{split}/{task}: the planner found no plan"
            _, info = env.reset()
            assert info["goal"] == "" and "Your task is to:" in env.view().observation
            for command in plan:
                assert command in info["candidates"], (command, info["candidates"])  # the engine lists it
                _, reward, terminated, _, info = env.step(command)
            assert terminated and info["won"] and info["score"] == info["max_score"] == 1.0 and reward == 1.0
            env.close()


def test_state_fields_come_from_the_engine_facts(data: Path) -> None:
    config = ALFWorldConfig(task_types="pick_and_place_simple", games="official", data_dir=str(data))
    env = config.make("pick_and_place_simple")
    plan = env.walkthrough()  # go to X, take O from X, go to Y, move O to Y
    env.reset()
    assert env.view().state["inventory"] == "nothing" and env.view().state["location"] == "the middle of the room"
    env.step(plan[0])
    env.step(plan[1])
    held, place = plan[1].split(" from ")[0].removeprefix("take "), plan[0].removeprefix("go to ")
    assert env.view().state["inventory"] == held and env.view().state["location"] == place
    env.close()


def test_the_seed_picks_the_splits_game_and_splits_differ(data: Path) -> None:
    files = {split: game_files(data, split, "pick_heat_then_place_in_recep") for split in SPLITS}
    assert all(len(found) == 2 for found in files.values())
    assert len({problem("pick_heat_then_place_in_recep", 0, split)[0] for split in SPLITS}) == 3
    config = ALFWorldConfig(task_types="pick_heat_then_place_in_recep", games="official", data_dir=str(data))
    env = config.make("pick_heat_then_place_in_recep")
    played = []
    for seed in (0, 1, 2):
        env.reset(seed=seed)
        played.append(env.view().artifacts["game"])
    assert played[0] != played[1] and played[2] == played[0]  # two games: seed 2 wraps to the first
    env.close()


def test_what_is_not_a_game_is_one_line(data: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=re.escape("json_2.1.1/train: no such folder")):
        game_files(tmp_path, "train", "pick_and_place_simple")
    folder = tmp_path / DATA_FOLDER / "train" / "pick_and_place_simple-x" / "trial_1"
    folder.mkdir(parents=True)
    (folder / "traj_data.json").write_text("{not json")
    (folder / "game.tw-pddl").write_text("{}")
    with pytest.raises(UserError, match=re.escape("traj_data.json: not an ALFWorld game file")):
        game_files(tmp_path, "train", "pick_and_place_simple")
    (folder / "traj_data.json").unlink()
    (folder / "traj_data.json").symlink_to(next(data.rglob("traj_data.json")))
    with pytest.raises(UserError, match="a link"):
        game_files(tmp_path, "train", "pick_and_place_simple")
    (folder / "traj_data.json").unlink()
    (folder / "traj_data.json").write_text(json.dumps({"task_type": "pick_and_place_simple"}))
    (folder / "game.tw-pddl").write_text(json.dumps({"solvable": True}))
    env = ALFWorldConfig(games="official", data_dir=str(tmp_path)).make("pick_and_place_simple")
    with pytest.raises(UserError, match="not an ALFWorld game file \\(no pddl_domain, grammar, pddl_problem\\)"):
        env.reset()


@pytest.mark.slow
def test_a_cli_run_learns_on_train_and_is_tested_on_unseen_rooms(tmp_path: Path) -> None:
    """`run.protocol=train_test`: the train split's games, then ALFWorld's valid_unseen games with the memory the train
    split left; every episode's record names the game the engine loaded."""
    run_dir = tmp_path / "r"
    tasks = ("look_at_obj_in_light", "pick_cool_then_place_in_recep")
    args = ["run", "env=alfworld", f"env.task_types=[{','.join(tasks)}]", "run.protocol=train_test",
            "policy=uniform", "run.episodes=2", "run.test_episodes=1", "run.max_steps=6", "run.progress=false",
            f"run.dir={run_dir}"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
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


def test_official_games_without_a_folder_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    result = CliRunner().invoke(app, ["run", "env=alfworld", "env.games=official", "policy=uniform", "run.episodes=1"])
    assert result.exit_code == 1, result.output
    assert "env.games=official needs ALFWorld's files" in " ".join(result.output.split())
