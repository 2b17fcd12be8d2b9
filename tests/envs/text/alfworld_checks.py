"""ALFWorld's engine checked in a process of its own (`python -m tests.envs.text.alfworld_checks DATA SCRATCH`), as a
run uses it: a pytest worker would keep each copy of the planner library (33 MB) to its end, and a worker that had
also run `doctor`'s old in-process probe (which unloaded copies) crashed. Each check raises AssertionError; the
process exits non-zero and prints which."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from jitrl_bench.envs.text.alfworld import ALFWorldConfig, game_files
from jitrl_bench.envs.text.alfworld_games import DATA_FOLDER, SPLITS, TASK_TYPES, problem
from jitrl_bench.errors import UserError
from tests.envs.test_contract import check_env_adapter


def planner_wins(data: Path) -> None:
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


def state_fields(data: Path) -> None:
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


def seeds_and_splits(data: Path) -> None:
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


def not_a_game(data: Path, tmp_path: Path) -> None:
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


if __name__ == "__main__":
    data, scratch = Path(sys.argv[1]), Path(sys.argv[2])
    planner_wins(data)
    state_fields(data)
    seeds_and_splits(data)
    not_a_game(data, scratch)
    check_env_adapter(lambda: ALFWorldConfig(games="official", data_dir=str(data)).make("pick_and_place_simple"))
    print("alfworld checks passed")
