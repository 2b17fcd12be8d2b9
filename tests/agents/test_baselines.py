"""The training-free baselines as peers of JitRL: one CLI run with every one of them on real Jericho games and the
embedded model, and the evidence in the run's files that each learned where its method puts what it learns, what
its learning cost, and that every agent played the same tasks, seeds, budget and candidates."""

from __future__ import annotations

import json
import os
import shutil
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from jitrl_bench.agents.awm import AWM, AWMConfig
from jitrl_bench.agents.guidance import Guidance, render_guided
from jitrl_bench.agents.reasoning_bank import memory_items
from jitrl_bench.cli import app
from jitrl_bench.contract import EpisodeContext, FinishedEpisode, StepTrace
from jitrl_bench.envs.text.prompt import TEXT_GAME
from jitrl_bench.memory.notebook import Note, Notebook
from jitrl_bench.run.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
GAMES = os.environ.get("JITRL_BENCH_GAMES") or str(REPO.parent / "shared" / "jericho-games")
BASELINES = ["static", "prompt_update", "full_history", "reflexion", "awm", "reasoning_bank"]
TASKS = ["zork1", "detective"]


def steps(run: Path, task: str, agent: str, episode: int) -> list[dict[str, Any]]:
    lines = (run / "steps" / task / agent / f"{episode}.jsonl").read_text().splitlines()
    return [json.loads(line)["decision"] for line in lines]


def notes(run: Path, agent: str) -> list[Note]:
    return Notebook(run / "memory" / agent / "notes.jsonl").all()


def overrides(run: Path) -> list[str]:
    return [
        "env=jericho", f"env.game=[{','.join(TASKS)}]", f"env.rom_dir={GAMES}",
        f"run.baselines=[{','.join(BASELINES)}]",
        "run.episodes=2", "run.max_steps=3", "run.progress=false", f"run.dir={run}",
        "baselines.reflexion.max_new_tokens=48", "baselines.reasoning_bank.max_new_tokens=120",
        "baselines.awm.max_new_tokens=48",
        "baselines.reasoning_bank.success=improved",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def all_baselines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("baselines") / "run"
    result = CliRunner().invoke(app, ["run", *overrides(run)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return run, result.output


@pytest.mark.slow
def test_one_table_with_every_agent_its_calls_and_tokens(all_baselines: tuple[Path, str]) -> None:
    run, output = all_baselines
    for agent in ["jitrl", *BASELINES]:
        assert agent in output
    assert "calls" in output and "tokens" in output
    summary = [line.split(",") for line in (run / "summary.csv").read_text().splitlines()]
    header = summary[0]
    rows = {(r[header.index("task")], r[header.index("agent")]): r for r in summary[1:]}
    assert len(rows) == len(TASKS) * (1 + len(BASELINES))
    for row in rows.values():
        assert int(row[header.index("calls")]) >= 6 and int(row[header.index("tokens")]) > 0


@pytest.mark.slow
def test_every_agent_plays_the_same_tasks_seeds_budget_and_candidates(all_baselines: tuple[Path, str]) -> None:
    run, _ = all_baselines
    rows = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    by_agent: dict[str, set[tuple[str, int, int, int]]] = {}
    for r in rows:
        by_agent.setdefault(r["agent"], set()).add((r["task"], r["episode"], r["seed"], r["max_steps"]))
    assert len({frozenset(v) for v in by_agent.values()}) == 1 and len(by_agent) == 1 + len(BASELINES)
    for task in TASKS:
        for episode in (0, 1):  # the same first state, so the same valid actions offered to every agent
            first = {agent: steps(run, task, agent, episode)[0]["candidates"] for agent in by_agent}
            assert len({tuple(c) for c in first.values()}) == 1


@pytest.mark.slow
def test_reflexion_puts_the_last_failure_s_plan_before_the_next_episode(all_baselines: tuple[Path, str]) -> None:
    run, _ = all_baselines
    rows = {(r["task"], r["episode"]): r for r in map(json.loads, (run / "episodes.jsonl").read_text().splitlines())
            if r["agent"] == "reflexion"}  # fmt: skip
    reflections = {(n.task, n.episode): n for n in notes(run, "reflexion")}
    for (task, episode), row in rows.items():  # one reflection for each failure (zork1 scores nothing in 3 moves)
        failed = not (row["score"] > 0 and row["score"] >= max(r["score"] for (t, e), r in rows.items()
                                                                   if t == task and e <= episode))  # fmt: skip
        assert ((task, episode) in reflections) == failed
        assert row["calls_by_purpose"].get("learning", 0) == int(failed)
    assert rows[("zork1", 0)]["score"] <= 0
    reflection = reflections[("zork1", 0)].text
    shown = steps(run, "zork1", "reflexion", 1)[0]["notes"]
    assert "Trial 1: " + " ".join(reflection.split()) in shown["guidance_context"]
    assert "guidance_context" not in steps(run, "zork1", "reflexion", 0)[0]["notes"]  # nothing before a failure


@pytest.mark.slow
def test_full_history_shows_the_earlier_episode_and_costs_no_call(all_baselines: tuple[Path, str]) -> None:
    run, _ = all_baselines
    for task in TASKS:
        earlier = [d["action"] for d in steps(run, task, "full_history", 0)]
        context = steps(run, task, "full_history", 1)[0]["notes"]["guidance_context"]
        assert "Attempt 1:" in context and all(f"> {a} (reward" in context for a in earlier)
    for r in map(json.loads, (run / "episodes.jsonl").read_text().splitlines()):
        if r["agent"] in ("full_history", "prompt_update", "static"):
            assert "learning" not in r["calls_by_purpose"] and r["llm_calls"] == r["steps"]


@pytest.mark.slow
def test_prompt_update_writes_jitrl_s_neighbours_into_the_prompt(all_baselines: tuple[Path, str]) -> None:
    run, _ = all_baselines
    entries = (run / "memory" / "prompt_update" / "entries.jsonl").read_text().splitlines()
    assert len(entries) == len(TASKS) * 2 * 3  # every step written with its return, as JitRL's memory
    for task in TASKS:
        decision = steps(run, task, "prompt_update", 1)[0]  # the same start as episode 0: a neighbour at 1.0
        first = decision["notes"]
        assert decision["neighbours"] and "Similar past situations" in first["guidance_context"]
        assert {n["id"] for n in decision["neighbours"]} <= {json.loads(e)["id"] for e in entries}
        assert "similarity 1.00" in first["guidance_context"]
        assert all(d["advantage"] == [0.0] * len(d["candidates"]) for d in steps(run, task, "prompt_update", 1))


@pytest.mark.slow
def test_reasoning_bank_retrieves_another_task_s_items_never_its_own(all_baselines: tuple[Path, str]) -> None:
    run, _ = all_baselines
    bank = notes(run, "reasoning_bank")
    assert bank and all(n.kind == "lessons" and n.text.startswith("## ") for n in bank)
    seen = 0
    for task in TASKS:
        for episode in (0, 1):
            shown = steps(run, task, "reasoning_bank", episode)[0]["notes"]
            for source in shown["guidance_sources"]:
                assert f"({task})" not in source  # the current task's own items are never retrieved
                seen += 1
    assert seen >= 1  # detective (played after zork1) reads zork1's items
    for r in map(json.loads, (run / "episodes.jsonl").read_text().splitlines()):
        if r["agent"] == "reasoning_bank":
            assert r["calls_by_purpose"]["learning"] == 1  # one induction per episode (success by the env here)


@pytest.mark.slow
def test_awm_induces_from_a_success_into_the_next_episode_s_system_text(all_baselines: tuple[Path, str]) -> None:
    run, _ = all_baselines
    rows = [r for r in map(json.loads, (run / "episodes.jsonl").read_text().splitlines()) if r["agent"] == "awm"]
    workflows = {(n.task, n.episode): n.text for n in notes(run, "awm") if n.kind == "workflow"}
    for r in rows:  # detective scores in 3 moves (a success), zork1 does not: one induction call per success
        assert r["calls_by_purpose"].get("learning", 0) == int((r["task"], r["episode"]) in workflows)
    assert ("detective", 0) in workflows and ("zork1", 0) not in workflows
    shown = steps(run, "detective", "awm", 1)[0]["notes"]
    assert workflows[("detective", 0)] in shown["guidance_system"]
    assert "guidance_system" not in steps(run, "zork1", "awm", 1)[0]["notes"]  # per site: nothing crosses games


@pytest.mark.slow
def test_awm_puts_the_workflow_induced_from_a_success_in_the_system_text(tmp_path: Path) -> None:
    """A won episode (recorded), the embedded model inducing, and the next episode's prompt on a real game."""
    spec = load_spec(["env=jericho", "env.game=zork1", f"env.rom_dir={GAMES}"])
    policy = spec.policy.make()
    generator = policy.generator()
    assert generator is not None
    notebook = Notebook(tmp_path / "notes.jsonl")
    awm = AWM(AWMConfig(success="won", max_new_tokens=48), notebook, False, generator)
    won = FinishedEpisode(
        "zork1", "",
        (StepTrace("West of House", "open mailbox", 0.0), StepTrace("Opening the mailbox", "take leaflet", 5.0)),
        "Taken.", True, 5.0, 350.0,
    )  # fmt: skip
    ctx = EpisodeContext("zork1", 0, "u0", np.random.default_rng(0))
    usage = awm.write(ctx, won, [0.0, 5.0])
    assert usage.calls == 1  # one induction for the success
    workflow = notebook.notes("workflow", scope="zork1")[-1].text
    env = spec.env.make("zork1")
    env.reset(seed=0)
    view = env.view()
    later = EpisodeContext("zork1", 1, "u1", np.random.default_rng(0))
    guidance = awm.read(later, view)
    assert workflow in guidance.system and guidance.sources == ("u0",)
    rendered = render_guided(view, [], policy.window, guidance)
    assert workflow.splitlines()[0] in rendered.prompt.messages[0].content  # the system text
    assert view.observation.split()[0] in rendered.prompt.messages[-1].content  # the step itself is all there
    env.close()
    policy.close()


def test_guidance_is_cut_oldest_first_and_never_the_step(tmp_path: Path) -> None:
    from jitrl_bench.policies.tokens import ApproxWindow

    window = ApproxWindow(200)
    view_spec = load_spec(["policy=uniform"])
    env = view_spec.env.make(view_spec.env.task_names()[0])
    env.reset(seed=0)
    view = env.view()
    long = Guidance(context="\n".join(f"attempt line {i} " + "word " * 8 for i in range(60)))
    rendered = render_guided(view, [], window, long)
    user = rendered.prompt.messages[-1].content
    assert "attempt line 59" in user and "attempt line 0 " not in user  # the newest lines stay
    assert any(cut.part == "guidance" for cut in rendered.cuts)
    assert "Admissible commands: " in user  # the step is still there
    assert render_guided(view, [], window, Guidance()) == TEXT_GAME.render(view, [], window)  # no guidance: as before
    env.close()


def test_memory_items_keep_what_a_cut_reply_completed() -> None:
    whole = '{"items": [{"title": "Check doors", "description": "When stuck.", "content": "Open doors first."}]}'
    assert memory_items(whole) == "## Check doors\nWhen stuck.\nOpen doors first."
    cut = whole[:-2] + ', {"title": "Cut'
    assert memory_items(cut) == "## Check doors\nWhen stuck.\nOpen doors first."
    assert memory_items("no json here") == "" and memory_items('{"items": "x"}') == ""


def test_notebook_keeps_only_committed_episodes_and_a_cut_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    book = Notebook(path)
    book.add(Note("reflection", "t", "t", 0, "kept", "plan A"))
    book.add(Note("reflection", "t", "t", 1, "lost", "plan B"))  # its episode was never committed
    with path.open("a") as out:
        out.write('{"kind": "reflection", "task": "t", "sco')  # a kill mid-line
    reopened = Notebook(path, committed={"kept"}.__contains__)
    assert [n.text for n in reopened.notes("reflection")] == ["plan A"]
    assert [n.text for n in Notebook(path).notes("reflection")] == ["plan A"]  # the file was repaired


@pytest.mark.slow
def test_a_frozen_memory_from_another_run_is_read_and_never_written(
    all_baselines: tuple[Path, str], tmp_path: Path
) -> None:
    source, _ = all_baselines
    before = [n for n in notes(source, "reflexion") if n.task == "zork1"]
    overrides = [
        "env=jericho", "env.game=zork1", f"env.rom_dir={GAMES}", "agent=reflexion", "run.baselines=[]",
        "run.episodes=1", "run.max_steps=2", "run.progress=false", f"run.dir={tmp_path / 'transfer'}",
        f"memory.load_from={source}", "memory.frozen=true", "agent.max_new_tokens=32",
    ]  # fmt: skip
    result = CliRunner().invoke(app, ["run", *overrides])
    assert result.exit_code == 0, result.output
    run = tmp_path / "transfer"
    (row,) = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert row["score"] <= 0 and "learning" not in row["calls_by_purpose"]  # a failure, and no reflection written
    assert [n.text for n in notes(run, "reflexion")] == [n.text for n in notes(source, "reflexion")]
    context = steps(run, "zork1", "reflexion", 0)[0]["notes"]["guidance_context"]
    assert all(" ".join(n.text.split()) in context for n in before)  # the source run's reflections, read


@pytest.mark.slow
def test_a_kill_after_a_reflection_was_written_resumes_to_the_same_notes(
    all_baselines: tuple[Path, str], tmp_path: Path
) -> None:
    """The reflection of detective's episode 1 is on disk, the episode's row is not (killed between the two): the
    resumed run drops that note, plays the episode again and writes the same reflection."""
    source, _ = all_baselines
    run = tmp_path / "resumed"
    shutil.copytree(source, run)
    lines = (run / "episodes.jsonl").read_text().splitlines()
    lost = [i for i, line in enumerate(lines) if itemgetter("agent", "task", "episode")(json.loads(line))
            == ("reflexion", "detective", 1)]  # fmt: skip
    (index,) = lost
    original = json.loads(lines[index])
    (run / "episodes.jsonl").write_text("".join(line + "\n" for i, line in enumerate(lines) if i != index))
    result = CliRunner().invoke(app, ["run", *overrides(run)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    (again,) = [r for r in rows if (r["agent"], r["task"], r["episode"]) == ("reflexion", "detective", 1)]
    assert len(rows) == len(lines) and again["episode_uid"] != original["episode_uid"]  # played once more, once
    for key in ("score", "steps", "calls_by_purpose", "tokens"):
        assert again[key] == original[key], key
    assert {(n.task, n.episode, n.text) for n in notes(run, "reflexion")} == {
        (n.task, n.episode, n.text) for n in notes(source, "reflexion")
    }
    assert len(notes(run, "reflexion")) == len(notes(source, "reflexion"))  # the cut one is gone, not doubled
