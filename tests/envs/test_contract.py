"""The env contract (jitrl_bench/envs/base.py, jitrl_bench/contract/) as one flat list of checks, run against every
text env config."""

from __future__ import annotations

import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from jitrl_bench.envs.text.game import TextGameEnv
from jitrl_bench.paths import CONFIG_DIR

SEED = 123
ROLLOUT_STEPS = 8
PACED = {"babyai"}
"""Envs whose win scores less the more steps it took (tests/envs/text/test_babyai.py checks the rule)."""
OVERRIDES = {"jericho": {"game": "detective"}, "scienceworld": {"tasks": ["find-plant"]}}  # short games that win
NEEDS_GAMES = {"jericho"}
OWN_PROCESS = {"alfworld"}
"""Envs checked in a process of their own (tests/envs/text/alfworld_checks.py runs `check_env_adapter` there)."""


def rollout(env: gym.Env[str, str], seed: int, actions: list[str] | None = None) -> list[tuple[Any, ...]]:
    """Play `actions` (or candidates picked by a seeded rng) after reset(seed), checking each step as it goes."""
    obs, info = env.reset(seed=seed)
    trajectory: list[tuple[Any, ...]] = [(obs, info)]
    rng = np.random.default_rng(seed)
    for t in range(len(actions) if actions is not None else ROLLOUT_STEPS):
        action = actions[t] if actions is not None else str(rng.choice(info["candidates"]))
        score = info["score"]
        obs, reward, terminated, truncated, info = env.step(action)
        check_step(env, obs, reward, terminated, truncated, info, score)
        trajectory.append((action, obs, reward, terminated, info))
        if terminated:
            break
    return trajectory


INFO_KEYS = ("candidates", "action_keys", "labels", "state", "score", "max_score", "won", "lost", "task")


def check_info(env: gym.Env[str, str], obs: str, info: dict[str, Any]) -> None:
    assert env.observation_space.contains(obs), f"observation outside observation_space: {obs[:200]!r}"
    assert set(INFO_KEYS) <= set(info), f"info lacks {set(INFO_KEYS) - set(info)}"
    view = env.view()  # type: ignore[attr-defined]
    assert view.problems() == [], view.problems()
    assert view.info() == {k: info[k] for k in view.info()}, "info is the typed view as a dict"
    assert view.observation == obs and view.actions == info["candidates"]
    assert isinstance(info["candidates"], list) and info["candidates"], "candidates must be a non-empty list"
    for candidate in info["candidates"]:
        assert isinstance(candidate, str) and candidate.strip(), f"bad candidate {candidate!r}"
        assert env.action_space.contains(candidate), f"candidate outside action_space: {candidate!r}"
    assert info["candidates"] == sorted(set(info["candidates"])), "candidates must be deduplicated and sorted"
    assert isinstance(info["state"], dict) and info["state"], "state must be a non-empty dict"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info["state"].items())
    for key in ("score", "max_score"):
        assert isinstance(info[key], float), f"{key} must be a float"
    assert info["max_score"] >= 0
    assert isinstance(info["won"], bool) and isinstance(info["lost"], bool)
    assert isinstance(info["task"], str) and info["task"]


def check_step(
    env: gym.Env[str, str], obs: str, reward: Any, terminated: Any, truncated: Any, info: dict[str, Any], score: float
) -> None:
    check_info(env, obs, info)
    assert isinstance(reward, float) and reward == info["score"] - score, "reward must be the score delta"
    assert isinstance(terminated, bool) and terminated == (info["won"] or info["lost"]), "terminated means game over"
    assert truncated is False, "adapters never truncate"


def check_reset_seed_determinism(make_env: Callable[[], gym.Env[str, str]]) -> None:
    env, other = make_env(), make_env()
    first = env.reset(seed=SEED)
    assert env.reset(seed=SEED) == first, "same seed, different reset"
    assert other.reset(seed=SEED) == first, "same seed, different reset in a second instance"
    check_info(env, *first)
    env.close()
    other.close()


def check_step_determinism(make_env: Callable[[], gym.Env[str, str]]) -> None:
    env = make_env()
    trajectory = rollout(env, SEED)
    actions = [step[0] for step in trajectory[1:]]
    assert rollout(env, SEED, actions) == trajectory, "same seed and actions, different trajectory"
    env.close()


def quoted(goal: str) -> str:
    """The goal's first quoted word: Click on the "cancel" button. -> cancel"""
    return goal.split('"')[1]


WINNING_KEYS: dict[str, Callable[[str], list[str]]] = {
    "click-button": lambda goal: [f"click button[{quoted(goal)}]"],
    "enter-text": lambda goal: [f"fill textbox[] {quoted(goal)!r}", "click button[Submit]"],
}
"""For a task without a walkthrough (the web envs): the candidate keys that win the episode with this goal."""


def check_a_play_wins(make_env: Callable[[], gym.Env[str, str]], full_score: bool = True) -> None:
    """Every env is played to a win, checking each step: its walkthrough (from reset()), or else the winning keys of
    its task (from reset(seed=SEED)); an env with neither fails (it used to pass without playing a step). Mutants
    caught (tried): a web env that never reports a win (`won = self._done and self._score > 1` in envs/web/env.py), and
    a TextWorld backend whose walkthrough is []."""
    env = make_env()
    walkthrough: list[str] = getattr(env.unwrapped, "walkthrough", list)()
    _, info = env.reset() if walkthrough else env.reset(seed=SEED)
    if not walkthrough:
        assert info["task"] in WINNING_KEYS, f"{info['task']} has no walkthrough: add its winning keys to WINNING_KEYS"
    plan = walkthrough or WINNING_KEYS[info["task"]](info["goal"])
    terminated, start, total = False, info["score"], 0.0
    for step in plan:
        assert not (info["won"] or info["lost"]), "game ended before the winning play did"
        score = info["score"]
        action = step if walkthrough else dict(zip(info["action_keys"], info["candidates"], strict=True))[step]
        obs, reward, terminated, truncated, info = env.step(action)
        check_step(env, obs, reward, terminated, truncated, info, score)
        total += float(reward)
    assert terminated and info["won"] and not info["lost"], "the winning play must win"
    if full_score:
        assert info["max_score"] == 0 or info["score"] == info["max_score"], "a won game has the full score"
    else:  # a score paced by the steps taken (BabyAI): a win scores above 0, at most the maximum
        assert 0 < info["score"] <= info["max_score"]
    assert total == pytest.approx(info["score"] - start), "the rewards add up to the score"
    env.close()


def check_gymnasium(make_env: Callable[[], gym.Env[str, str]]) -> None:
    """Gymnasium's own checker too (it also sends random printable text as actions)."""
    env = make_env()
    assert isinstance(env.observation_space, gym.spaces.Text) and isinstance(env.action_space, gym.spaces.Text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
    env.close()


def check_env_adapter(make_env: Callable[[], gym.Env[str, str]], full_score: bool = True) -> None:
    """Gymnasium-checker style: spaces, info types, seed and step determinism, reward = score delta, termination."""
    check_gymnasium(make_env)
    check_reset_seed_determinism(make_env)
    check_step_determinism(make_env)
    check_a_play_wins(make_env, full_score)


def _text_env_configs() -> list[Path]:
    """The configs/env/*.yaml whose config makes a TextGameEnv."""
    paths = []
    for path in sorted((CONFIG_DIR / "env").glob("*.yaml")):
        conf = OmegaConf.load(path)
        target = conf.get("_target_") if isinstance(conf, DictConfig) else None
        try:
            make = getattr(get_class(target), "make", None) if target else None
        except ImportError:  # an optional extra (e.g. web) is not installed: its envs have their own tests
            continue
        hints = typing.get_type_hints(make) if make else {}
        if isinstance(hints.get("return"), type) and issubclass(hints["return"], TextGameEnv):
            paths.append(path)
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in _text_env_configs() if p.stem not in OWN_PROCESS], ids=lambda p: p.stem)
def test_text_env_contract(path: Path, request: pytest.FixtureRequest) -> None:
    if path.stem in NEEDS_GAMES:
        request.getfixturevalue("games_dir")  # skips when the game files are absent
    conf = OmegaConf.merge(OmegaConf.load(path), OVERRIDES.get(path.stem, {}))
    config = instantiate(conf)
    task = config.task_names()[0]
    check_env_adapter(lambda: config.make(task), full_score=path.stem not in PACED)
