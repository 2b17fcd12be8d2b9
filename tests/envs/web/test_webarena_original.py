"""The original WebArena and WebArena-Lite, graded by their own evaluators, end to end against the local GitLab stand-in
(scripts/webarena_standin.py): real Chromium, a real sign-in form, libwebarena's and Lite's evaluators unchanged. The
only fake is the LLM judge: a local HTTP server that answers like an OpenAI chat endpoint."""

from __future__ import annotations

import http.server
import json
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest
from omegaconf import OmegaConf
from rich.console import Console
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.errors import InfraError, UserError
from jitrl_bench.run.episode import Provenance, RunConfig
from jitrl_bench.run.local import run_all
from jitrl_bench.run.rundir import RunDirectory
from jitrl_bench.run.spec import load_spec

pytest.importorskip("browsergym.core", reason="needs the web extra: make setup")

from jitrl_bench.envs.web.env import WebEnv
from jitrl_bench.envs.web.webarena.original import (
    JudgeConfig,
    JudgeUnavailable,
    WebArenaConfig,
    WebArenaLiteConfig,
    evaluators,
)
from jitrl_bench.errors import Ungradable
from scripts.webarena_standin import USERNAME, ProfileGitLabStandIn, serve
from tests.envs.web.web_support import ScriptedAgent, require_browser

require_browser("webarena", "browsergym.webarenalite")
pytestmark = pytest.mark.usefixtures("gitlab_account")


class FakeJudge(http.server.BaseHTTPRequestHandler):
    """POST /v1/chat/completions → {"choices": [{"message": {"content": verdict}}]}; keeps what it was sent."""

    verdict = "correct"
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": self.verdict}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def sites(standin_sites: dict[str, str]) -> Iterator[dict[str, str]]:
    """The stand-in sites and a fake LLM judge (outside the subject: the grader's use of it is)."""
    server = serve(FakeJudge, 0)
    yield {**standin_sites, "judge": f"http://127.0.0.1:{server.server_address[1]}/v1"}
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_judge_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):  # no judge unless a test configures one
        monkeypatch.delenv(name, raising=False)


def config(sites: dict[str, str], tmp_path: Path, task: int, lite: bool = False, **kwargs: Any) -> WebArenaConfig:
    cls = WebArenaLiteConfig if lite else WebArenaConfig
    return cls(tasks=[task], urls={"gitlab": sites["gitlab"]}, har_dir=str(tmp_path), **kwargs)


def act(env: WebEnv, info: dict[str, Any], key: str) -> tuple[float, bool, dict[str, Any]]:
    """Take the candidate action named `key`."""
    _, _, terminated, _, info = env.step(dict(zip(info["action_keys"], info["candidates"], strict=True))[key])
    assert info["last_action_error"] == ""
    return info["score"], terminated, info


def artifacts(sites: dict[str, str], task: int, answer: str | None, path: str = "") -> dict[str, Any]:
    url = sites["gitlab"]
    return {"task_id": task, "answer": answer, "har": "", "urls": {"gitlab": url}, "final_url": url + path}


def test_task44_url_match_live_and_offline(sites: dict[str, str], tmp_path: Path) -> None:
    cfg = config(sites, tmp_path, 44)
    env = cfg.make("44")
    obs, info = env.reset(seed=0)
    assert info["goal"] == "Check out my todos" and "link 'To-Do List'" in obs  # signed in: the dashboard shows
    assert "answer('done')" in info["candidates"] and "answer('done')" in info["instruction"]
    _, _, info = act(env, info, "click link[To-Do List]")
    score, terminated, info = act(env, info, "answer done")
    assert terminated and info["won"] and score == 1.0
    assert info["artifacts"]["final_url"] == f"{sites['gitlab']}/dashboard/todos"
    assert cfg.regrade(info["artifacts"]) == cfg.regrade(info["artifacts"]) == 1.0  # offline, the same twice
    _, info = env.reset(seed=1)
    _, _, info = act(env, info, "click link[Issues]")
    score, terminated, info = act(env, info, "answer done")
    assert terminated and info["lost"] and score == 0.0 and cfg.regrade(info["artifacts"]) == 0.0
    env.close()
    lite = config(sites, tmp_path, 44, lite=True)  # Lite keeps the original id
    env = lite.make("44")
    _, info = env.reset(seed=0)
    _, _, info = act(env, info, "click link[To-Do List]")
    assert act(env, info, "answer done")[0] == 1.0 and lite.regrade(info["artifacts"]) == 1.0
    env.close()


def test_string_match_from_the_answer(sites: dict[str, str], tmp_path: Path) -> None:
    """Task 349 (exact_match "yjlou"): graded from the answer alone; 132 (must_include ["1"]) tokenizes offline."""
    cfg = config(sites, tmp_path, 349)
    env = cfg.make("349")
    env.reset(seed=0)
    _, _, terminated, _, info = env.step("answer('yjlou')")
    assert terminated and info["won"] and info["score"] == 1.0
    env.close()
    assert not cfg.grader.needs_page(cfg._by_id[349])
    grades = {a: cfg.regrade(artifacts(sites, 349, a)) for a in ("yjlou", "'YJLOU'", "yjlou, abisubramanya27", None)}
    assert grades == {"yjlou": 1.0, "'YJLOU'": 1.0, "yjlou, abisubramanya27": 0.0, None: 0.0}
    # a one-character reference is matched as a token (nltk's word_tokenize without its punkt data files)
    grades = {a: cfg.regrade(artifacts(sites, 132, a)) for a in ("1", "There was 1 commit.", "10", "11 commits")}
    assert grades == {"1": 1.0, "There was 1 commit.": 1.0, "10": 0.0, "11 commits": 0.0}
    assert cfg.regrade({**artifacts(sites, 349, "yjlou"), "urls": {"gitlab": "http://copy2:8023"}}) == 1.0
    helpers = sys.modules[evaluators("webarena").llm_fuzzy_match.__module__]
    assert helpers.GITLAB == "http://copy2:8023"  # the `func:` helpers read the graded episode's sites
    token = "Your RSS feed token is TMN_bBn9Z48qVbUFZV45"  # task 259: exact_match here, must_include in Lite
    assert cfg.regrade(artifacts(sites, 259, token)) == 0.0
    assert WebArenaLiteConfig().regrade(artifacts(sites, 259, token)) == 1.0


def test_fuzzy_match_asks_the_judge(sites: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Task 173: fuzzy_match ["No, it is open"] and url_match on the issue; 168: ua_match ("N/A", "No repo found")."""
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    judge = JudgeConfig(base_url=sites["judge"], model="judge-model", api_key_env="JUDGE_KEY")
    on_issue = "/byteblaze/empathy-prompts/-/issues/8"
    FakeJudge.seen.clear()
    for cls in (WebArenaConfig, WebArenaLiteConfig):
        FakeJudge.verdict = "Correct."
        cfg = cls(judge=judge)
        assert cfg.regrade(artifacts(sites, 173, "It is still open", on_issue)) == 1.0
        assert cfg.regrade(artifacts(sites, 173, "It is still open", on_issue)) == 1.0  # one verdict per prompt
        assert cfg.regrade(artifacts(sites, 173, "It is still open", "/dashboard/issues")) == 0.0  # wrong page
        FakeJudge.verdict = "The answer is incorrect."
        assert cfg.regrade(artifacts(sites, 173, "Yes, it is closed", on_issue)) == 0.0
    asked = FakeJudge.seen[0]
    assert len(FakeJudge.seen) == 4 and asked["path"] == "/v1/chat/completions" and asked["auth"] == "Bearer sk-test"
    assert asked["model"] == "judge-model" and "reference answer: No, it is open" in asked["messages"][1]["content"]
    cfg = WebArenaConfig(judge=judge)
    assert cfg.regrade(artifacts(sites, 168, "N/A")) == 1.0 and len(FakeJudge.seen) == 4  # exact "N/A": no judge
    FakeJudge.verdict = "same"
    assert cfg.regrade(artifacts(sites, 168, "No repository has that many stars")) == 1.0
    assert "actual unachievable reason: No repo found" in FakeJudge.seen[-1]["messages"][1]["content"]
    with socket.socket() as probe:  # a judge nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    down = WebArenaConfig(judge=JudgeConfig(base_url=closed, max_retries=0))
    with pytest.raises(JudgeUnavailable, match=re.escape(f"LLM judge at {closed} (env.judge) failed")):
        down.regrade(artifacts(sites, 173, "It is still open", on_issue))


def test_no_judge_marks_the_grade_unavailable(sites: dict[str, str], tmp_path: Path) -> None:
    """Without a judge a fuzzy grade is `ungraded` (kept for a later regrade), never a silent 0, never a replay."""
    with pytest.raises(JudgeUnavailable, match=r"env\.judge\.base_url") as raised:
        WebArenaConfig().regrade(artifacts(sites, 173, "It is open", "/byteblaze/empathy-prompts/-/issues/8"))
    assert isinstance(raised.value, Ungradable) and not isinstance(raised.value, InfraError)
    assert WebArenaConfig().regrade(artifacts(sites, 173, None)) == 0.0  # no answer: nothing to judge
    env = config(sites, tmp_path, 173).make("173")
    env.reset(seed=0)
    _, _, terminated, _, info = env.step("answer('It is open')")
    assert terminated and info["score"] == 0.0 and "LLM judge" in info["ungraded"]
    assert info["artifacts"]["answer"] == "It is open"  # what a later regrade needs
    env.close()


@pytest.mark.slow
def test_program_html_on_the_live_page(sites: dict[str, str], tmp_path: Path) -> None:
    """Tasks 418 (original) and 419 (Lite): set the GitLab status; the check opens the profile page in a new tab."""
    ProfileGitLabStandIn.status = ""
    for task, status, lite in ((418, "Busy", False), (419, "Enjoying life", True)):
        cfg = config(sites, tmp_path, task, lite=lite)
        assert cfg.grader.needs_page(cfg._by_id[task])
        env = cfg.make(str(task))
        _, info = env.reset(seed=0)
        _, _, _, _, info = env.step(f"goto('{sites['gitlab']}/-/profile')")
        fill = dict(zip(info["action_keys"], info["candidates"], strict=True))["press textbox[Your status] 'Enter'"]
        bid = re.findall(r"'([^']*)'", fill)[0]
        env.step(f"fill('{bid}', '{status}')")
        _, _, info = act(env, info, "click button[Set status]")
        assert info["url"] == f"{sites['gitlab']}/{USERNAME}" and ProfileGitLabStandIn.status == status
        score, terminated, info = act(env, info, "answer done")
        assert terminated and score == 1.0
        assert cfg.regrade(info["artifacts"]) is None  # needs the live page: not re-gradable offline
        env.close()
    env = config(sites, tmp_path, 418).make("418")  # the status is now "Enjoying life", not "Busy"
    env.reset(seed=0)
    _, _, terminated, _, info = env.step("answer('done')")
    assert terminated and info["lost"] and info["score"] == 0.0
    env.close()


def test_oracle_stop_ends_on_success(sites: dict[str, str], tmp_path: Path) -> None:
    cfg = config(sites, tmp_path, 44, oracle_stop=True)
    assert cfg.name == "webarena+oracle-stop"
    env = cfg.make("44")
    _, info = env.reset(seed=0)
    score, terminated, info = act(env, info, "click link[Issues]")
    assert not terminated and score == 0.0
    score, terminated, info = act(env, info, "click link[To-Do List]")  # graded after the step: stops, no answer
    assert terminated and info["won"] and score == 1.0 and info["artifacts"]["answer"] is None
    env.close()


def test_task_sets_and_config() -> None:
    spec = load_spec(["env=webarena"])
    assert isinstance(spec.env, WebArenaConfig) and spec.env.task_names() == ["44"] and spec.run.max_steps == 30
    assert spec.env.judge.model == "gpt-4-1106-preview" and spec.env.judge.base_url is None
    lite = load_spec(["env=webarena_lite", "env.oracle_stop=true", "env.judge.base_url=http://127.0.0.1:1/v1"]).env
    assert isinstance(lite, WebArenaLiteConfig) and lite.name == "webarena_lite+oracle-stop"
    assert lite.judge.base_url == "http://127.0.0.1:1/v1"
    assert len(WebArenaConfig(tasks=[]).task_names()) == 812
    lite_ids = {int(t) for t in WebArenaLiteConfig(tasks=[]).task_names()}
    assert len(lite_ids) == 165 and 44 in lite_ids and 132 not in lite_ids  # original ids
    gitlab = WebArenaLiteConfig(sites=["gitlab"]).task_names()
    assert 0 < len(gitlab) < 165 and all(WebArenaLiteConfig()._by_id[int(t)].sites == ("gitlab",) for t in gitlab)
    assert WebArenaConfig(tasks=[45, 44]).task_names() == ["44", "45"]  # 45 expects 44's changes
    for bad in (["env.tasks=[132]"], ["env.sites=[gitlabz]"], ["env.judge.modell=x"]):
        with pytest.raises(UserError):
            load_spec(["env=webarena_lite", *bad]).env.task_names()


def test_run_records_unjudged_episodes_as_errors_and_regrades(sites: dict[str, str], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {"_target_": "jitrl_bench.envs.web.webarena.original.WebArenaConfig", "tasks": [44, 173],
           "urls": {"gitlab": sites["gitlab"]}, "har_dir": str(run_dir / "har")}  # fmt: skip
    run_dir.mkdir()
    OmegaConf.save(OmegaConf.create({"env": env}), run_dir / "config.yaml")
    config = WebArenaConfig(tasks=[44, 173], urls={"gitlab": sites["gitlab"]}, har_dir=str(run_dir / "har"))
    protocol = Provenance("webarena", "scripted", "r1", "h1")
    run = RunConfig(episodes=1, max_steps=3, progress=False)
    run_all(
        RunDirectory(run_dir),
        ["44", "173"],
        config.make,
        [ScriptedAgent({"44": ["click link[To-Do List]"]}, last="answer done")],
        run,
        protocol,
        Console(quiet=True),
    )  # fmt: skip  (two tasks, one copy of the sites: each episode hands it back)
    rows = {r.task: r for r in RunDirectory(run_dir).finished()}
    assert rows["44"].status == "ok" and rows["44"].score == 1.0
    assert rows["173"].status == "ungraded" and "LLM judge" in rows["173"].error  # outside success rates, kept
    result = CliRunner().invoke(app, ["regrade", str(run_dir)])
    assert (
        result.exit_code == 0 and "0 grades differ" in result.output and "0 ungraded ones now graded" in result.output
    )
    FakeJudge.verdict = "Incorrect."  # the scripted answer "done" is not "No, it is open"
    result = CliRunner().invoke(app, ["regrade", str(run_dir), "--judge-url", sites["judge"]])  # the reader's judge
    assert result.exit_code == 0 and "1 ungraded ones now graded" in result.output, result.output
    regraded = pd.read_csv(run_dir / "regrade.csv").set_index("task")
    assert regraded.loc[44, "regraded"] == 1.0 and regraded.loc[173, "regraded"] == 0.0


def test_report_infeasible_answers_na(sites: dict[str, str], tmp_path: Path) -> None:
    """Task 168 is unachievable (reference "N/A"): reporting it infeasible answers "N/A", graded without a judge."""
    env = config(sites, tmp_path, 168).make("168")
    env.reset(seed=0)
    _, _, terminated, _, info = env.step("report_infeasible('No repository has that many stars')")
    assert terminated and info["artifacts"]["answer"] == "N/A" and info["score"] == 1.0 and not info["ungraded"]
    env.close()
