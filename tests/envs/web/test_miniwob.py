"""MiniWoB++ in real Chromium: scripted episodes win, the env honours the contract, the config builds from YAML."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from jitrl_bench.checks import check_tree
from jitrl_bench.errors import UserError
from jitrl_bench.paths import CONFIG_DIR
from jitrl_bench.policies.tokens import ChatTokens
from tests.envs.test_contract import check_env_adapter, check_step

pytest.importorskip("browsergym.core", reason="needs the web extra (pip install -e '.[web]')")

from jitrl_bench.envs.web.browser import chromium_executable
from jitrl_bench.envs.web.env import WebEnv, fill_values
from jitrl_bench.envs.web.miniwob import DEFAULT_TASKS, MiniWoBConfig

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
        assert info["goal"].startswith("Click on the")
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
    """A key is the element's role and label as the page shows them, never its id: the same button keeps its key
    on another page where its id changed."""
    env = MiniWoBConfig(tasks="click-button").make("click-button")
    actions_of: dict[str, set[str]] = {}
    goals = set()
    for seed in range(6):
        env.reset(seed=seed)
        view = env.view()
        goals.add(view.goal)
        shown = {
            m.group(1): (m.group(2), m.group(3)) for m in re.finditer(r"\[(\w+)\] (\w+) '([^']*)'", view.observation)
        }
        for candidate in view.candidates:
            call = re.match(r"(\w+)\('(\w+)'", candidate.action)
            assert call is not None, candidate.action
            verb, (role, label) = call.group(1), shown[call.group(2)]
            assert candidate.key.startswith(f"{verb} {role}[{label}]"), (candidate, role, label)
            assert f"{role} {label!r}" in candidate.label
            actions_of.setdefault(candidate.key, set()).add(candidate.action)
    assert len(goals) > 1, "different seeds should give different episodes"
    assert any(len(actions) > 1 for actions in actions_of.values()), "some button's id changed, its key did not"
    env.close()


@pytest.mark.slow
def test_web_prompt_shows_goal_labels_and_fits_the_window() -> None:
    """The prompt of a real MiniWoB page: goal, URL, the page, candidates with role and label, the action grammar;
    under a tight window it is cut by tokens, actionable lines first, and the cut is reported."""
    env = MiniWoBConfig(tasks="click-checkboxes").make("click-checkboxes")
    env.reset(seed=3)
    view = env.view()
    window = ChatTokens("smollm2", max_prompt_tokens=4096)
    full = view.layout.render(view, [], window)
    text = full.prompt.text()
    assert f"Goal: {view.goal}" in text and f"URL: {view.url}" in text and "click('id')" in text
    assert all(f"{c.action}  # {c.label}" in text for c in view.candidates)  # e.g. click('14')  # click checkbox 'x'
    assert full.cuts == () and all(line.strip() in text for line in view.observation.splitlines() if "[" in line)
    size = window.prompt_tokens(full.prompt)
    partial = None
    for budget in range(size + 120, size - 120, -2):  # shrink the window until the page no longer fits whole
        tight = ChatTokens("smollm2", max_prompt_tokens=budget)
        cut = view.layout.render(view, [], tight)
        assert len(tight.prompt_ids(cut.prompt)) <= budget  # always fits: nothing is cut blindly later
        pages = [c for c in cut.cuts if c.part == "page"]
        if pages and 0 < pages[0].lines_after < pages[0].lines_before:
            partial = cut, pages[0]
            break
    assert partial is not None, "some window keeps part of the page"
    cut, page = partial
    assert page.tokens_after < page.tokens_before
    kept = cut.prompt.text()
    assert all(f"{c.action}  # {c.label}" in kept for c in view.candidates)
    for c in view.candidates:  # the lines of the elements the candidates act on are the last to go
        bid = re.search(r"\('(\w+)'", c.action)
        assert bid is not None and f"[{bid.group(1)}]" in kept
    env.close()


@pytest.mark.slow
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
    with pytest.raises(UserError, match=r"env.tasks=click-buton: not a MiniWoB\+\+ task; did you mean click-button"):
        check_tree(MiniWoBConfig(tasks=["click-buton"]), "env")
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
    first = {
        agent: json.loads((run_dir / "steps" / "click-button" / agent / "0.jsonl").read_text().splitlines()[0])
        for agent in ("jitrl", "static")
    }
    assert first["jitrl"]["decision"]["prompt_sha1"] == first["static"]["decision"]["prompt_sha1"]  # one prompt
    memory = (run_dir / "memory" / "jitrl" / "entries.jsonl").read_text().splitlines()
    assert len(memory) == sum(r["steps"] for r in rows if r["agent"] == "jitrl")
    check_the_web_report(run_dir, rows, tmp_path)


def check_the_web_report(run_dir: Path, rows: list[dict[str, Any]], tmp_path: Path) -> None:
    """Cost sums equal the per-call records; `report --prices` prices this model; Chromium shows a web step."""
    import pandas as pd
    from typer.testing import CliRunner

    from jitrl_bench.cli import app
    from tests.report_page import open_report, report_data, varied_image

    cost = pd.read_csv(run_dir / "cost.csv").set_index("agent")
    for agent in ("jitrl", "static"):
        decisions = [
            json.loads(line)["decision"]
            for r in rows
            if r["agent"] == agent
            for line in (run_dir / "steps" / "click-button" / agent / f"{r['episode']}.jsonl").read_text().splitlines()
        ]
        assert cost.loc[agent, "calls_acting"] == sum(d["usage"]["calls"] for d in decisions) > 0
        assert cost.loc[agent, "prompt_acting"] == sum(d["usage"]["prompt_tokens"] for d in decisions) > 0
        assert cost.loc[agent, "llm_calls"] == sum(r["llm_calls"] for r in rows if r["agent"] == agent)
        assert cost.loc[agent, "priced_by"] == "not priced (SmolLM2-135M-Instruct on cpu)"
    prices = tmp_path / "prices.yaml"
    prices.write_text("models: {SmolLM2-135M-Instruct: {input: 2.0, output: 8.0}}\n")
    result = CliRunner().invoke(app, ["report", str(run_dir), "--prices", str(prices), "-o", str(tmp_path / "p.html")])
    assert result.exit_code == 0, result.output
    priced = {row["agent"]: row for row in report_data(tmp_path / "p.html")["cost"]}
    for agent in ("jitrl", "static"):
        expected = (cost.loc[agent, "prompt_tokens"] * 2.0 + cost.loc[agent, "completion_tokens"] * 8.0) / 1e6
        assert priced[agent]["priced_by"] == "tokens" and abs(priced[agent]["usd"] - expected) < 1e-12
    step = json.loads((run_dir / "steps" / "click-button" / "static" / "1.jsonl").read_text().splitlines()[0])
    with open_report(run_dir / "report.html", "#d=run%7Cclick-button%7Cstatic%7C1%7C0") as report:
        assert report.page.inner_text("#v-action") == step["action"]
        assert report.cells("#v-candidates", 2) == step["decision"]["candidates"]
        shown = report.numbers("#v-candidates", 4)
        assert all(a is not None and abs(a - b) < 6e-4 for a, b in zip(shown, step["decision"]["z"], strict=True))
        outcome = next(r for r in rows if r["agent"] == "static" and r["episode"] == 1)
        badge = "success" if outcome["success"] else "no success"
        assert report.page.inner_text("#v-outcome .badge") == badge
        assert varied_image(report.screenshot("#viewer")) and report.errors == []


@pytest.mark.slow
def test_paper_agent_on_the_web_acts_only_on_elements_of_the_page(tmp_path: Path) -> None:
    """agent=jitrl_paper adds remembered actions as candidates; on the web a remembered `click button[X]` must ground
    to an element of the current page, so every action it takes is one the action parser accepts."""
    from typer.testing import CliRunner

    from jitrl_bench.cli import app
    from jitrl_bench.contract.web_actions import parse_action

    run_dir = tmp_path / "paper"
    # plain cosine retrieval: the paper's lexical re-rank is its Jericho setting and finds no web neighbours
    args = ["run", "env=miniwob", "env.tasks=[click-button]", "agent=jitrl_paper", "agent.lexical=null",
            "agent.threshold=0.3", "policy=uniform", "run.baselines=[]", "run.episodes=8", "run.max_steps=3",
            "run.progress=false", f"run.dir={run_dir}"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    decisions = [
        json.loads(line)["decision"] for path in sorted((run_dir / "steps").rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]  # fmt: skip
    assert any(d["neighbours"] for d in decisions), "later episodes must retrieve the earlier ones"
    dropped = [key for d in decisions for key in d["notes"]["memory_actions_dropped"]]
    assert any(key.startswith("click button[") for key in dropped)  # remembered buttons that this page lacks
    for d in decisions:
        parse_action(d["action"], ())  # raises on a memory key such as "click button[ok]"
        assert all(key.startswith(("click ", "fill ", "press ", "select ")) for key in d["notes"]["memory_actions"])
        assert len(d["candidates"]) == len(d["z"])


@pytest.mark.slow
def test_sigterm_mid_run_closes_the_browser_and_the_run_resumes(tmp_path: Path) -> None:
    import sys

    from tests.processes import rows_of, start, terminate_after_first_episode

    run_dir = tmp_path / "web"
    command = [sys.executable, "-m", "jitrl_bench", "run", "env=miniwob", "env.tasks=[click-button]", "policy=uniform",
               "run.episodes=6", "run.max_steps=3", "run.progress=false", f"run.dir={run_dir}"]  # fmt: skip
    terminate_after_first_episode(start(command), run_dir)  # asserts no Chromium, no driver is left
    done = len(rows_of(run_dir))
    assert 1 <= done < 12
    resumed = start(command)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    keys = sorted((r["agent"], r["episode"]) for r in rows_of(run_dir))
    assert keys == [(a, e) for a in ("jitrl", "static") for e in range(6)]
