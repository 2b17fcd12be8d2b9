"""The WebRL agent: its observation builder on real pages (MiniWoB++ and the stand-in WebArena GitLab), recorded
checkpoint-style replies executed on real pages through the env's safe operations (an injection attempt runs
nothing), and a CLI run on the embedded model for the format. The parser's browser-free cases are in
test_webrl_grammar.py, which runs without Chromium.
The checkpoints need a GPU: `env=webarena_lite agent=webrl policy=vllm policy.model=THUDM/webrl-llama-3.1-8b`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jitrl_bench.agents.webrl import WebRLAgent, WebRLConfig
from jitrl_bench.agents.webrl_grammar import NOOP, ReplyError, parse_reply, to_env_action
from jitrl_bench.contract import Generated, Usage
from tests.envs.web.web_support import require_browser

pytest.importorskip("browsergym.core", reason="needs the web extra: make setup")
require_browser()

from jitrl_bench.cli import app  # noqa: E402
from jitrl_bench.envs.web.env import WebEnv  # noqa: E402
from jitrl_bench.envs.web.miniwob import MiniWoBConfig  # noqa: E402
from jitrl_bench.rewards.base import EnvRewards  # noqa: E402
from jitrl_bench.run.episode import Provenance, Task, play_episode  # noqa: E402
from jitrl_bench.run.settings import RunConfig  # noqa: E402


def test_the_observation_numbers_what_can_be_clicked_and_maps_it_to_the_env_s_ids() -> None:
    env = MiniWoBConfig(tasks="click-checkboxes").make("click-checkboxes")
    env.reset(seed=1)
    view = env.view()
    assert view.html is not None
    numbers = re.findall(r' id="(\d+)"', view.html.text)
    assert numbers == [str(i) for i in range(len(numbers))] and set(view.html.ids) == set(
        numbers
    )  # 0, 1, 2... in order
    assert view.html.text.count('type="checkbox"') == 6 and 'data-status="not-checked"' in view.html.text
    clickable = {c.action.split("'")[1] for c in view.candidates if c.action.startswith("click(")}
    assert set(view.html.ids.values()) == clickable  # every number is an element the env can act on
    env.step(f"click('{view.html.ids['0']}')")
    assert 'id="0" value="on" type="checkbox" data-bbox' in env.view().html.text  # type: ignore[union-attr]
    assert 'data-status="checked"' in env.view().html.text  # type: ignore[union-attr]
    env.close()


@pytest.mark.usefixtures("gitlab_account")
def test_the_observation_of_a_stand_in_webarena_page(standin_sites: dict[str, str], tmp_path: Path) -> None:
    from jitrl_bench.envs.web.webarena.verified import VerifiedConfig

    env = VerifiedConfig(tasks=[44], urls={"gitlab": standin_sites["gitlab"]}, har_dir=str(tmp_path)).make("44")
    env.reset(seed=0)
    view = env.view()
    assert view.html is not None and view.html.text.startswith("<html")
    todo = re.search(r'<a id="(\d+)"[^>]*> To-Do List </a>', view.html.text)
    assert todo is not None, view.html.text[:2000]
    assert f"click('{view.html.ids[todo.group(1)]}')" in view.actions  # the same link as the env's candidate
    env.close()


class Recorded:
    """Checkpoint-style replies, recorded (the model is outside this test's subject: the parser and executor are)."""

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def complete(self, text: str, max_new_tokens: int = 256, stop: Sequence[str] = ()) -> Generated:
        self.prompts.append(text)
        return Generated(self.replies.pop(0), Usage(1, len(text) // 4, 12))


def play(env: WebEnv, task: str, replies: Sequence[str]) -> tuple[dict[str, object], Recorded]:
    recorded = Recorded(replies)
    agent = WebRLAgent(WebRLConfig(), recorded)
    protocol = Provenance("miniwob", "recorded", "r", "h")
    played = play_episode(agent, Task(task, env), 0, RunConfig(max_steps=len(replies)), protocol, EnvRewards())
    return {"record": played.record, "steps": played.steps}, recorded


def test_recorded_replies_win_enter_text_through_the_env(tmp_path: Path) -> None:
    env = MiniWoBConfig(tasks="enter-text").make("enter-text")
    env.reset(seed=0)  # the seed play_episode uses for episode 0
    word = env.view().goal.split('"')[1]  # Enter "Kanesha" into the text field and press Submit.
    replies = [f'# Element: the text field\ndo(action="Type", argument="{word}", element="0")',
               '# Element: the Submit button\ndo(action="Click", element="1")']  # fmt: skip
    result, recorded = play(env, "enter-text", replies)
    record = result["record"]
    assert record.success and record.llm_calls == 2  # type: ignore[attr-defined]
    steps = result["steps"]
    assert steps[0].action.startswith("fill(") and steps[1].action.startswith("click(")  # type: ignore[index]
    assert recorded.prompts[1].startswith(f"Task Instruction: {env.view().goal}")
    assert replies[0] in recorded.prompts[1] and "Round 1" in recorded.prompts[1]
    env.close()


def test_a_typed_injection_is_only_text_and_failures_end_the_episode(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    env = MiniWoBConfig(tasks="enter-text").make("enter-text")
    payload = f"'); __import__('os').system('touch {marker}') #"
    replies = [f'do(action="Type", argument="{payload}", element="0")'] + ["I am not sure."] * 5
    result, _ = play(env, "enter-text", replies)
    steps = result["steps"]
    assert not marker.exists()
    assert steps[1].action == NOOP and steps[1].decision.notes["parse_failure"]  # type: ignore[index]
    assert steps[-1].decision.notes["early_stop"] == "parse failures"  # type: ignore[index]
    assert steps[-1].action.startswith("send_msg_to_user(")  # type: ignore[index]
    assert f'value="{payload}"' in env.view().html.text  # type: ignore[union-attr]  # typed as text, nothing else
    env.close()


@pytest.mark.slow
def test_webrl_runs_on_the_embedded_model_through_the_cli(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        "run", "env=miniwob", "env.tasks=[click-button]", "agent=webrl", "run.baselines=[static]",
        "agent.max_new_tokens=24", "run.episodes=1", "run.max_steps=2", "run.progress=false", f"run.dir={run}",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "webrl" in result.output and "static" in result.output
    (row,) = [r for r in map(json.loads, (run / "episodes.jsonl").read_text().splitlines()) if r["agent"] == "webrl"]
    steps = [
        json.loads(line) for line in (run / "steps" / "click-button" / "webrl" / "0.jsonl").read_text().splitlines()
    ]
    assert len(steps) == row["steps"] == 2
    for step in steps:
        decision = step["decision"]
        assert decision["usage"]["calls"] == 1 and decision["prompt_sha1"] and decision["notes"]["prompt_chars"] > 0
    replay_outcomes(row["seed"], steps)


def expected_outcome(reply: str, ids: dict[str, str], last_element: str) -> tuple[str, dict[str, str], str]:
    """What the agent must make of `reply` on a page numbered `ids`: the action, its note, the element it used."""
    try:
        parsed = parse_reply(reply)
        mapped = to_env_action(parsed, ids, last_element)
    except ReplyError as failure:
        return NOOP, {"parse_failure": str(failure)}, last_element
    return mapped.text, {"parsed": parsed.kind}, parsed.element or last_element


def replay_outcomes(seed: int, steps: list[dict[str, Any]]) -> None:
    """Each step's recorded outcome (a parse failure with its reason, or the parsed action) is exactly what the
    grammar makes of the recorded reply on that step's page, replayed here from the same seed (the 135M model's
    replies are whatever they are; what the agent does with each is not). Mutant caught (tried): the agent acting
    on a parse failure with the env's first candidate instead of the no-op, or noting "parsed" without the kind."""
    env = MiniWoBConfig(tasks="click-button").make("click-button")
    env.reset(seed=seed)
    last_element = ""
    for step in steps:
        view = env.view()
        assert view.observation == step["observation"] and view.html is not None  # the replay is on the same page
        notes = step["decision"]["notes"]
        action, note, last_element = expected_outcome(notes["reply"], dict(view.html.ids), last_element)
        assert step["action"] == action
        assert {k: notes[k] for k in ("parse_failure", "parsed") if k in notes} == note
        env.step(step["action"])
    env.close()


class ReadsThePage:
    """A scripted checkpoint: clicks the element whose text is `link` (found by its number in the prompt's HTML),
    then exits with `answer`. Outside the subject: the observation, prompt, parser, executor and grader are."""

    def __init__(self, link: str, answer: str) -> None:
        self.link = link
        self.answer = answer
        self.prompts: list[str] = []

    def complete(self, text: str, max_new_tokens: int = 256, stop: Sequence[str] = ()) -> Generated:
        self.prompts.append(text)
        if len(self.prompts) == 1:
            page = text.rsplit("<|start_header_id|>user<|end_header_id|>\n", 1)[1]
            number = re.search(rf'<a id="(\d+)"[^>]*> {re.escape(self.link)} </a>', page)
            assert number is not None, page[:2000]
            return Generated(
                f'# Element: the {self.link} link\ndo(action="Click", element="{number.group(1)}")', Usage(1)
            )
        return Generated(f'exit(message="{self.answer}")', Usage(1))


@pytest.mark.usefixtures("gitlab_account")
def test_a_webrl_episode_on_webarena_lite_is_graded_by_lite_s_evaluator(
    standin_sites: dict[str, str], tmp_path: Path
) -> None:
    from jitrl_bench.envs.web.webarena.original import WebArenaLiteConfig

    env = WebArenaLiteConfig(tasks=[44], urls={"gitlab": standin_sites["gitlab"]}, har_dir=str(tmp_path)).make("44")
    model = ReadsThePage("To-Do List", "done")
    agent = WebRLAgent(WebRLConfig(), model)
    protocol = Provenance("webarena_lite", "scripted", "r", "h")
    played = play_episode(agent, Task("44", env), 0, RunConfig(max_steps=4), protocol, EnvRewards())
    assert played.record.score == 1.0 and played.record.steps == 2  # url_match on the todos page, graded after exit
    assert [s.action.split("(")[0] for s in played.steps] == ["click", "send_msg_to_user"]
    second = model.prompts[1]
    assert second.startswith("Task Instruction: Check out my todos\n\nRound 0\n\n") and "Round 1" in second
    assert "** Simplified html **" not in second and second.count("<html") == 1  # only the current page is shown
    env.close()


@pytest.mark.usefixtures("gitlab_account")
def test_a_lone_surrogate_in_an_answer_is_committed_and_resumed(standin_sites: dict[str, str], tmp_path: Path) -> None:
    """`exit(message="\\ud83d done")` decodes (by `ast`) to a lone surrogate, which UTF-8 cannot write: the commit
    used to fail, and every resume with it. The parsers replace it with U+FFFD and say so; the run commits, and resumes.
    Mutant caught (tried): without `valid_text` in webrl_grammar and envs.actions, run_all raises UnicodeEncodeError."""
    from rich.console import Console

    from jitrl_bench.envs.web.webarena.original import WebArenaLiteConfig
    from jitrl_bench.run.local import run_all
    from jitrl_bench.run.rundir import RunDirectory

    cfg = WebArenaLiteConfig(tasks=[44], urls={"gitlab": standin_sites["gitlab"]}, har_dir=str(tmp_path / "har"))
    protocol = Provenance("webarena_lite", "scripted", "r", "h")
    run_dir = tmp_path / "run"
    models = [ReadsThePage("To-Do List", "\\ud83d done") for _ in range(2)]
    for model in models:  # the run, then its resume
        run = RunConfig(episodes=1, max_steps=4, progress=False)
        run_all(
            RunDirectory(run_dir),
            ["44"],
            cfg.make,
            [WebRLAgent(WebRLConfig(), model)],
            run,
            protocol,
            Console(quiet=True),
        )
    assert len(models[0].prompts) == 2 and models[1].prompts == []  # the resume found the episode committed
    (row,) = RunDirectory(run_dir).finished()
    assert row.status == "ok" and row.artifacts["answer"] == "\ufffd done"
    last = json.loads((run_dir / "steps" / "44" / "webrl" / "0.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert last["action"] == "send_msg_to_user('\ufffd done')" and last["decision"]["notes"]["replaced_surrogates"] == 1
