"""TextWorld games: generation by seed (deterministic, cached, safe in parallel) and winning them through our env."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from jitrl_bench.envs.text.textworld import TextWorldConfig, game_name, make_game
from jitrl_bench.errors import UserError


def test_game_names_carry_the_options() -> None:
    assert game_name("simple", 7) == "tw-simple-7"
    assert game_name("simple", 7, rewards="sparse") == "tw-simple-rsparse-7"
    assert game_name("custom", 3, world_size=2, nb_objects=3, quest_length=1) == "tw-custom-w2-o3-q1-3"
    assert TextWorldConfig(kind="custom", seeds=[1, 2]).task_names() == ["tw-custom-w3-o4-q3-1", "tw-custom-w3-o4-q3-2"]


@pytest.mark.parametrize(
    ("kind", "opts", "message"),
    [("maze", {}, "unknown TextWorld game kind 'maze'"), ("simple", {"world_size": 3}, "takes no option world_size")],
)
def test_bad_generation_options(kind: str, opts: dict[str, int], message: str) -> None:
    with pytest.raises(UserError, match=message):
        game_name(kind, 7, **opts)


def test_unknown_task() -> None:
    with pytest.raises(UserError, match="tw-simple-7"):
        TextWorldConfig().make("tw-simple-8")


def game_data(game: Path) -> dict[str, Any]:
    """The .json sidecar without the one field that names where TextWorld is installed (its grammar folder)."""
    data = json.loads(game.with_suffix(".json").read_text())
    del data["KB"]["text_grammars_path"]
    return data


def test_generation_is_deterministic_cached_and_parallel_safe(tw_simple: Path, tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as pool:  # two generators race for the same game: one makes it, the other reuses it
        games = list(pool.map(lambda _: make_game("simple", 7, tmp_path), range(2)))
    assert games == [tmp_path / "tw-simple-7.z8"] * 2
    # the suite's cached copy was made by another process, maybe another day, maybe by another checkout's venv
    for suffix in (".z8", ".ni"):
        assert games[0].with_suffix(suffix).read_bytes() == tw_simple.with_suffix(suffix).read_bytes(), suffix
    assert game_data(games[0]) == game_data(tw_simple), "same seed, different .json"
    assert games[0].read_bytes()[0x12:0x18] == b"000000", "the compile date stays in the story header"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "tw-simple-7.json",
        "tw-simple-7.ni",
        "tw-simple-7.z8",
    ]
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [], "temporary folder left behind"
    made = games[0].stat().st_mtime_ns
    assert make_game("simple", 7, tmp_path).stat().st_mtime_ns == made, "a cached game was generated again"


def test_a_game_cached_with_its_compile_date_loses_it(tw_simple: Path, tmp_path: Path) -> None:
    for suffix in (".z8", ".json", ".ni"):
        (tmp_path / f"tw-simple-7{suffix}").write_bytes(tw_simple.with_suffix(suffix).read_bytes())
    dated = bytearray(tw_simple.read_bytes())
    dated[0x12:0x18] = b"261203"
    (tmp_path / "tw-simple-7.z8").write_bytes(bytes(dated))
    assert make_game("simple", 7, tmp_path).read_bytes() == tw_simple.read_bytes()


def test_simple_walkthrough_wins(tw_simple: Path) -> None:
    env = TextWorldConfig().make("tw-simple-7")
    obs, info = env.reset()
    assert "TextWorld" in obs and "$$" not in obs, "the objective stays, the ASCII-art title goes"
    assert info["max_score"] == 7 and info["score"] == 0
    assert "open chest drawer" in info["candidates"]
    rewards = []
    for action in env.walkthrough():
        obs, reward, terminated, _, info = env.step(action)
        rewards.append(reward)
    assert len(rewards) == 8 and terminated and info["won"] and info["score"] == info["max_score"] == sum(rewards)
    assert info["state"]["inventory"] == "You are carrying: an old key."
    assert info["state"]["location"].startswith("-= Kitchen =-")
    env.close()


def test_custom_small_game_wins() -> None:
    env = TextWorldConfig(kind="custom", world_size=3, nb_objects=4, quest_length=3).make("tw-custom-w3-o4-q3-7")
    _, info = env.reset()
    assert info["max_score"] == 1
    for action in env.walkthrough():
        _, _, terminated, _, info = env.step(action)
    assert len(env.walkthrough()) == 3 and terminated and info["won"] and info["score"] == 1
    env.close()
