"""BabyAI through minigrid: the view in words, the level's reward rule, and a run through the CLI whose episodes
record the level and seed they were generated from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.envs.text.babyai import BabyAIBackend, BabyAIConfig, describe


def test_the_view_in_words_places_each_object_relative_to_the_agent() -> None:
    image = np.zeros((7, 7, 3), dtype=np.uint8)
    image[:, :, 0] = 1  # empty
    image[3, 6] = (10, 0, 0)  # the agent: at the bottom middle of its view, facing up
    image[3, 5] = (5, 4, 0)  # a yellow key right in front
    image[1, 4] = (6, 0, 0)  # a red ball 2 forward, 2 left
    image[5, 6] = (4, 2, 2)  # a locked blue door 2 to the right
    image[3, 1] = (2, 5, 0)  # a wall 5 ahead (the key in front hides nothing: rays stop at objects)
    image[0, 6] = (2, 5, 0)
    text = describe(image).splitlines()
    assert text[0] == "In front of you: a yellow key."
    assert "You see a red ball 2 steps forward and 2 steps left." in text
    assert "You see a locked blue door 2 steps right." in text
    assert "The nearest wall left is 3 steps away." in text
    assert not any("wall forward" in line for line in text)  # the key in front stops the forward ray
    assert not any("yellow key" in line for line in text[1:])  # the cell in front is said once


def test_a_win_scores_as_the_level_says_and_the_seed_makes_the_level() -> None:
    backend = BabyAIBackend("GoToRedBall")
    plan = backend.walkthrough()  # BabyAI's own bot
    backend.reset(0)
    for command in plan:
        backend.step(command)
    assert backend.won and not backend.lost
    assert backend.score == 1 - 0.9 * len(plan) / 64  # GoToRedBall's step limit: 64
    assert backend.reset(3) == backend.reset(3) != backend.reset(4)
    backend.close()


def test_a_run_through_the_cli_records_the_level_and_seed_it_played(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["env=babyai", "env.level=[GoToRedBall,OpenDoor]", "policy=uniform", "run.episodes=2", "run.max_steps=5"]
    result = CliRunner().invoke(app, ["run", *args, "run.progress=false", f"run.dir={run}"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 2 * 2  # levels x episodes x agents (jitrl, static)
    for record in records:
        assert record["artifacts"]["level"] == f"BabyAI-{record['task']}-v0"
        assert record["artifacts"]["seed"] == str(record["seed"])
    missions = {r["task"]: r["artifacts"]["mission"] for r in records}
    assert missions["GoToRedBall"] == "go to the red ball" and missions["OpenDoor"].startswith("open ")
    assert BabyAIConfig(level=["GoToRedBall"]).task_names() == ["GoToRedBall"]


def test_one_level_by_name_or_a_list() -> None:
    """`env.level=GoToRedBall`, as a user types one name (mutant tried: the key typed list[str], as it was: exit 2,
    "AnyNode is not a ListConfig"), and a list of them."""
    from jitrl_bench.run.spec import load_spec

    assert load_spec(["env=babyai", "env.level=GoToRedBall"]).env.task_names() == ["GoToRedBall"]
    assert load_spec(["env=babyai", "env.level=[GoToRedBall,OpenDoor]"]).env.task_names() == ["GoToRedBall", "OpenDoor"]
