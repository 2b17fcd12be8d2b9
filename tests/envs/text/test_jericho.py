"""Jericho through our env: candidates, state fields read without spending moves, seeds. (The detective walkthrough
replayed to victory and full score is part of test_contract.py's check_env_adapter.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from jitrl_bench.envs.text.game import FALLBACK_COMMANDS
from jitrl_bench.envs.text.jericho import JerichoConfig
from jitrl_bench.errors import UserError

pytestmark = pytest.mark.jericho


def test_detective_candidates_and_state(games_dir: Path) -> None:
    env = JerichoConfig(game="detective", rom_dir=str(games_dir)).make("detective")
    obs, info = env.reset()
    assert "Detective" in obs and info["score"] == 10 and info["max_score"] == 360  # the game scores its first turn
    assert info["candidates"] == ["east", "north", "take paper", "west"]
    assert info["state"]["location"].startswith("<< Chief's office >>")
    assert info["state"]["inventory"] == "You are carrying nothing."
    moves = env.backend._env.get_moves()  # type: ignore[attr-defined]
    env.backend.state_fields()
    assert env.backend._env.get_moves() == moves, "reading the location must not spend a move"  # type: ignore[attr-defined]
    obs, _, _, _, info = env.step("take paper")
    assert "paper" in info["state"]["inventory"] and info["state"]["observation"] == obs
    env.close()


def test_walkthrough_seed_is_the_default(games_dir: Path) -> None:
    config = JerichoConfig(game="zork1", rom_dir=str(games_dir))
    env = config.make("zork1")
    default = env.reset()
    assert env.reset(seed=0) == default  # Jericho's rule: 0 means the walkthrough's seed
    assert env.reset() == default, "reset() without a seed keeps the last seed"
    env.close()


def test_after_the_game_ends_candidates_fall_back(games_dir: Path) -> None:
    env = JerichoConfig(game="zork1", rom_dir=str(games_dir)).make("zork1")
    env.reset()
    for action in ["north", "east", "open window", "enter", "west", "take lamp", "move rug", "open trap door", "down"]:
        _, _, terminated, _, info = env.step(action)
        assert not terminated
    obs, _, terminated, _, info = env.step("south")  # in the dark without a lit lamp: eaten by a grue
    assert "grue" in obs and terminated and info["lost"] and not info["won"]
    assert info["candidates"] == sorted(FALLBACK_COMMANDS)
    env.close()


def test_unknown_task_and_spacy_model(games_dir: Path) -> None:
    with pytest.raises(UserError, match="this config has: zork1"):
        JerichoConfig(game="zork1").make("detective")
    with pytest.raises(UserError, match="spaCy model 'no_such_model' is not installed"):
        JerichoConfig(game="zork1", spacy_model="no_such_model").make("zork1")
