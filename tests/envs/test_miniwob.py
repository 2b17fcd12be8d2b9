"""MiniWoB++ in real Chromium: scripted episodes win, the env honours the contract, the config builds from YAML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from jitrl_bench.errors import UserError
from jitrl_bench.paths import CONFIG_DIR
from tests.envs.test_contract import check_env_adapter, check_step

pytest.importorskip("browsergym.core", reason="needs the web extra (pip install -e '.[web]')")

from jitrl_bench.envs.browser import chromium_executable
from jitrl_bench.envs.miniwob import DEFAULT_TASKS, MiniWoBConfig
from jitrl_bench.envs.web import WebEnv, fill_values

try:
    chromium_executable()
except UserError as missing:
    pytest.skip(str(missing), allow_module_level=True)


def pick(info: dict[str, Any], key: str) -> str:
    """The candidate whose stable key is `key` (the element's id changes, the key does not)."""
    by_key = dict(zip(info["action_keys"], info["candidates"], strict=True))
    assert key in by_key, f"{key!r} not among {sorted(by_key)}"
    return str(by_key[key])


def play(env: WebEnv, seed: int, keys: list[str]) -> dict[str, Any]:
    _, info = env.reset(seed=seed)
    for key in keys:
        score = info["score"]
        obs, reward, terminated, truncated, info = env.step(pick(info, key))
        check_step(env, obs, reward, terminated, truncated, info, score)
    return info


def test_click_button_scripted() -> None:
    env = MiniWoBConfig(tasks="click-button").make("click-button")
    for seed in (1, 2):
        _, info = env.reset(seed=seed)
        label = info["goal"].split('"')[1]  # Click on the "cancel" button.
        info = play(env, seed, [f"click button[{label}]"])
        assert info["won"] and info["score"] == 1.0 and info["max_score"] == 1.0 and not info["lost"]
        assert info["goal"].startswith("Click on the") and "web agent" in info["instruction"]
    env.close()


def test_enter_text_scripted() -> None:
    env = MiniWoBConfig(tasks="enter-text").make("enter-text")
    _, info = env.reset(seed=5)
    word = fill_values(info["goal"])[0]
    assert word in info["goal"]
    info = play(env, 5, [f"fill textbox[] {word!r}", "click button[Submit]"])
    assert info["won"] and info["score"] == 1.0
    env.close()


def test_wrong_click_loses() -> None:
    env = MiniWoBConfig(tasks="click-button").make("click-button")
    _, info = env.reset(seed=1)
    label = info["goal"].split('"')[1]
    wrong = next(k for k in info["action_keys"] if k.startswith("click button[") and k != f"click button[{label}]")
    info = play(env, 1, [wrong])
    assert info["lost"] and not info["won"] and info["score"] == 0.0
    _, _, terminated, _, info = env.step(info["candidates"][0])
    assert terminated and info["last_action_error"] == "the episode is over"
    env.close()


def test_seeds_change_the_task_and_keys_survive() -> None:
    env = MiniWoBConfig(tasks="click-button").make("click-button")
    goals = {env.reset(seed=seed)[1]["goal"] for seed in range(4)}
    assert len(goals) > 1, "different seeds should give different episodes"
    _, info = env.reset(seed=1)
    assert all(k.startswith(("click ", "fill ", "press ")) for k in info["action_keys"])
    assert not any(c in k for k in info["action_keys"] for c in info["candidates"])  # keys carry no ids
    env.close()


@pytest.mark.parametrize("task", ["click-button", "enter-text"])
def test_contract(task: str) -> None:
    config = MiniWoBConfig(tasks=[task])
    check_env_adapter(lambda: config.make(task))


def test_yaml_config() -> None:
    config = instantiate(OmegaConf.load(CONFIG_DIR / "env" / "miniwob.yaml"))
    assert isinstance(config, MiniWoBConfig) and config.name == "miniwob"
    assert config.task_names() == DEFAULT_TASKS
    conf = OmegaConf.load(CONFIG_DIR / "env" / "miniwob.yaml")
    override = instantiate(OmegaConf.merge(conf, {"tasks": "click-link"}))
    assert override.task_names() == ["click-link"]
    with pytest.raises(UserError):
        MiniWoBConfig(tasks=["no-such-task"]).task_names()
    with pytest.raises(UserError):
        MiniWoBConfig(tasks=["click-button"]).make("enter-text")


def test_fill_values() -> None:
    assert fill_values('Enter "Kanesha" into the text field') == ["Kanesha"]
    assert fill_values("Type bob and press Submit") == ["Type", "bob", "and", "press", "Submit"]


@pytest.mark.slow
def test_smollm2_jitrl_run_end_to_end(tmp_path: Path) -> None:
    """`jitrl-bench run env=miniwob` on the embedded model: the table, the rows, model log-probs, JitRL's memory."""
    from typer.testing import CliRunner

    from jitrl_bench.cli import app

    run_dir = tmp_path / "run"
    args = ["run", "env=miniwob", "env.tasks=[click-button]", "run.episodes=2", "run.max_steps=3",
            "run.progress=false", f"run.dir={run_dir}"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "click-button" in result.output and "SmolLM2" in result.output
    rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert sorted((r["agent"], r["episode"]) for r in rows) == [
        ("jitrl", 0),
        ("jitrl", 1),
        ("static", 0),
        ("static", 1),
    ]
    assert all(r["status"] == "ok" and r["env"] == "miniwob" and 1 <= r["steps"] <= 3 for r in rows)
    step = json.loads((run_dir / "steps" / "click-button" / "jitrl" / "0.jsonl").read_text().splitlines()[0])
    z = [v for v in step["decision"]["z"] if v is not None]
    assert len(z) == len(step["decision"]["candidates"]) > 1 and max(z) < 0 and len(set(z)) > 1  # real log-probs
    memory = (run_dir / "memory" / "jitrl" / "entries.jsonl").read_text().splitlines()
    assert len(memory) == sum(r["steps"] for r in rows if r["agent"] == "jitrl")
