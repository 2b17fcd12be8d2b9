"""`jitrl-bench run env=webarena_verified` and `jitrl-bench regrade` against the local GitLab stand-in: what a web run
keeps per episode (answer, HAR, site URLs) is enough to grade it again, offline, to the same numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf
from rich.console import Console
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.run.episode import Provenance, RunConfig
from jitrl_bench.run.local import run_all
from jitrl_bench.run.rundir import RunDirectory
from tests.envs.web.web_support import ScriptedAgent, require_browser

pytest.importorskip("webarena_verified", reason="needs the web extra: make setup")

from jitrl_bench.envs.web.webarena.verified import VerifiedConfig
from scripts.webarena_standin import NAV, GitLabStandIn, serve

require_browser()
pytestmark = pytest.mark.usefixtures("gitlab_account")


@pytest.fixture
def gitlab(standin_sites: dict[str, str]) -> str:
    return standin_sites["gitlab"]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.slow
def test_run_then_regrade_agrees(gitlab: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code, out = cli(
        "run", "env=webarena_verified", "env.tasks=[44]", f"env.urls.gitlab={gitlab}", "policy=uniform",
        "run.episodes=2", "run.max_steps=3", "run.progress=false", f"run.dir={run_dir}",
    )  # fmt: skip
    assert code in (0, 1), out  # 1: an episode hit the stand-in's 502 link three times (an infrastructure error)
    rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    graded = [r for r in rows if r["status"] == "ok"]
    assert len(rows) == 4 and {(r["env"], r["max_steps"]) for r in rows} == {("webarena_verified", 3)}
    assert all(r["status"] == "error" and "502" in r["error"] for r in rows if r not in graded)
    for row in graded:
        har = Path(row["artifacts"]["har"])
        assert har.parent == run_dir / "har" and har.stat().st_size > 0
        assert row["artifacts"]["urls"] == {"gitlab": gitlab}
    code, out = cli("regrade", str(run_dir))
    assert code == 0 and "0 grades differ" in out, out
    regraded = pd.read_csv(run_dir / "regrade.csv")
    assert len(regraded) == len(graded) > 0 and regraded.agree.all()
    from tests.report_page import open_report

    for row in graded:  # the report's viewer shows each web episode's final answer and its grade
        with open_report(run_dir / "report.html", f"#d=run%7C44%7C{row['agent']}%7C{row['episode']}%7C0") as report:
            answer = report.page.locator("#v-answer")
            if row["artifacts"]["answer"] is None:
                assert answer.count() == 0
            else:
                assert answer.inner_text() == row["artifacts"]["answer"]
            outcome = report.page.inner_text("#v-outcome")
            assert f"{row['score']:g} / {row['max_score']:g}" in outcome
            assert ("no success" not in outcome) == row["success"] and report.errors == []


def test_regrade_finds_what_the_run_did_not_grade(gitlab: str, tmp_path: Path) -> None:
    """A run graded later (grade_on_end=false) records 0; regrade gives the real grade, from a moved directory too."""
    run_dir = tmp_path / "run"
    env = {"_target_": "jitrl_bench.envs.web.webarena.verified.VerifiedConfig", "tasks": [44],
           "urls": {"gitlab": gitlab}, "har_dir": str(run_dir / "har"), "grade_on_end": False}  # fmt: skip
    run_dir.mkdir()
    OmegaConf.save(OmegaConf.create({"env": env}), run_dir / "config.yaml")
    config = VerifiedConfig(tasks=[44], urls={"gitlab": gitlab}, har_dir=str(run_dir / "har"), grade_on_end=False)
    run = RunConfig(episodes=2, max_steps=4, progress=False)
    protocol = Provenance("webarena_verified", "scripted", "r1", "h1")
    agent = ScriptedAgent({"44": ["click link[To-Do List]"]}, last="answer NAVIGATE")
    run_all(RunDirectory(run_dir), ["44"], config.make, [agent], run, protocol, Console(quiet=True))
    assert [r.score for r in RunDirectory(run_dir).finished()] == [0.0, 0.0]
    moved = tmp_path / "moved"
    shutil.move(run_dir, moved)  # the recorded HAR paths no longer exist; regrade finds them under moved/har
    code, out = cli("regrade", str(moved))
    assert code == 0 and "2 grades differ" in out, out
    regraded = pd.read_csv(moved / "regrade.csv")
    assert list(regraded.regraded) == [1.0, 1.0] and list(regraded.recorded) == [0.0, 0.0]


def test_regrade_refuses_what_it_cannot_grade(tmp_path: Path) -> None:
    code, out = cli("regrade", str(tmp_path))
    assert code == 2 and "not a run directory" in out
    OmegaConf.save(
        OmegaConf.create({"env": {"_target_": "jitrl_bench.envs.text.textworld.TextWorldConfig"}}),
        tmp_path / "config.yaml",
    )
    code, out = cli("regrade", str(tmp_path))
    assert code == 2 and "only WebArena runs" in out


class SteadyGitLab(GitLabStandIn):
    """No 502 link: every episode of the concurrency test must finish and show which copy it ran on."""

    nav = NAV.replace("<a href='/broken'>Broken</a>", "")


@pytest.mark.slow
def test_two_instances_serve_concurrent_episodes(tmp_path: Path) -> None:
    first, second = serve(SteadyGitLab, 0), serve(SteadyGitLab, 0)
    gitlab, other = (f"http://127.0.0.1:{s.server_address[1]}" for s in (first, second))
    try:
        instances = f"env.instances=[{{gitlab:'{gitlab}'}},{{gitlab:'{other}'}}]"
        code, out = cli(
            "run", "env=webarena_verified", "env.tasks=[44]", instances,
            "policy=uniform", "run.episodes=2", "run.max_steps=2", "run.concurrency=2", "run.progress=false",
            f"run.dir={tmp_path / 'run'}",
        )  # fmt: skip
    finally:
        for server in (first, second):
            server.shutdown()
            server.server_close()
    assert code == 0, out
    rows = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    used = {(r["artifacts"]["instance"], r["artifacts"]["urls"]["gitlab"]) for r in rows}
    assert used == {(0, gitlab), (1, other)}
