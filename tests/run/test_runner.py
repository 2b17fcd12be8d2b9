"""The runner's plumbing on a real TextWorld game: what lands in the run directory, and that memory matches it.
The policy is the uniform one (no model): the subject here is the runner, not the scorer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console

from jitrl_bench.agents.jitrl import JitRLConfig
from jitrl_bench.agents.recall import GivenMemories
from jitrl_bench.agents.static import StaticConfig
from jitrl_bench.contract import BuildContext
from jitrl_bench.envs.text.textworld import TextWorldConfig
from jitrl_bench.memory.store import ExperienceMemory, MemoryConfig
from jitrl_bench.policies.uniform import UniformPolicy
from jitrl_bench.results.tables import write_summary
from jitrl_bench.run.episode import Provenance, RunConfig
from jitrl_bench.run.local import run_all
from jitrl_bench.run.rundir import RunDirectory


def play(tmp_path: Path, embedder, episodes: int = 3, beta: float = 0.5) -> tuple[RunDirectory, ExperienceMemory]:
    env = TextWorldConfig(seeds=[7])
    policy = UniformPolicy()
    memory = MemoryConfig().open(tmp_path / "memory" / "jitrl", embedder.dim, 0.9, embedder.name)
    ctx = BuildContext(policy, 1.0, GivenMemories(embedder, lambda agent, gamma: memory))
    agents = [JitRLConfig(beta=beta).build(ctx), StaticConfig().build(ctx)]
    run = RunConfig(episodes=episodes, max_steps=6, seed=3, progress=False)
    run_dir = RunDirectory(tmp_path)
    protocol = Provenance("textworld", "uniform", "run-1", "abc")
    run_all(run_dir, env.task_names(), env.make, agents, run, protocol, Console(quiet=True))
    return run_dir, memory


def test_run_directory_holds_every_episode_step_and_memory_entry(tmp_path: Path, embedder) -> None:
    run_dir, memory = play(tmp_path, embedder)
    rows = run_dir.finished()
    assert sorted((r.agent, r.episode) for r in rows) == [(a, e) for a in ("jitrl", "static") for e in range(3)]
    for r in rows:
        assert (r.env, r.policy, r.max_steps, r.seed) == ("textworld", "uniform", 6, 3 + r.episode)
        assert 1 <= r.steps <= 6 and r.status == "ok" and r.max_score == 7
        lines = (tmp_path / "steps" / "tw-simple-7" / r.agent / f"{r.episode}.jsonl").read_text().splitlines()
        assert len(lines) == r.steps
        step = json.loads(lines[0])
        assert set(step["decision"]) >= {"candidates", "z", "advantage", "z_prime", "probs", "neighbours", "action"}
        assert abs(sum(step["decision"]["probs"]) - 1) < 1e-9
    jitrl_steps = sum(r.steps for r in rows if r.agent == "jitrl")
    assert len(memory) == jitrl_steps
    reopened = ExperienceMemory(tmp_path / "memory" / "jitrl", embedder.dim, gamma=0.9)
    assert len(reopened) == jitrl_steps
    assert {rec["episode"] for rec in reopened.records()} == {r.episode_uid for r in rows if r.agent == "jitrl"}
    summary = write_summary(tmp_path)
    assert list(summary.columns[:13]) == [
        "task", "agent", "episodes", "mean_score", "mean_low", "mean_high", "final5_score", "max_score", "norm_score",
        "success_rate", "success_low", "success_high", "auc",
    ]  # fmt: skip
    assert (tmp_path / "summary.md").exists() and (tmp_path / "curve.png").stat().st_size > 1000


def test_later_episodes_retrieve_earlier_ones(tmp_path: Path, embedder) -> None:
    play(tmp_path, embedder, episodes=2)
    first_step = json.loads((tmp_path / "steps" / "tw-simple-7" / "jitrl" / "1.jsonl").read_text().splitlines()[0])
    assert first_step["decision"]["neighbours"], "episode 1 starts where episode 0 started: memory must answer"
    assert all(n["similarity"] >= 0.8 for n in first_step["decision"]["neighbours"])


def test_beta_infinity_plays_exactly_like_the_static_agent(tmp_path: Path, embedder) -> None:
    """Fairness: same prompt, candidates, seeds and RNG streams — with β = ∞ JitRL must be the frozen policy."""
    play(tmp_path, embedder, episodes=3, beta=float("inf"))
    by_agent: dict[str, dict[int, list[tuple[str, str]]]] = {"jitrl": {}, "static": {}}
    for agent in by_agent:
        for e in range(3):
            lines = (tmp_path / "steps" / "tw-simple-7" / agent / f"{e}.jsonl").read_text().splitlines()
            steps = [json.loads(line) for line in lines]
            by_agent[agent][e] = [(s["action"], s["decision"]["prompt_sha1"]) for s in steps]  # same prompts too
            decisions = [json.loads(line)["decision"] for line in lines]
            if agent == "jitrl":
                assert all(np.array_equal(d["z"], d["z_prime"]) for d in decisions)
    assert by_agent["jitrl"] == by_agent["static"]


def test_resume_skips_finished_episodes_and_ignores_uncommitted_memory(tmp_path: Path, embedder) -> None:
    run_dir, memory = play(tmp_path, embedder, episodes=2)
    # Simulate a kill between the memory write and the commit of a third episode.
    from jitrl_bench.memory.store import Experience

    orphan = [Experience("s", "a", "a", [1.0], "never-committed", "tw-simple-7", 0, False)]
    memory.add(orphan, np.ones((1, embedder.dim), np.float32))
    with open(tmp_path / "episodes.jsonl", "ab") as f:
        f.write(b'{"task": "tw-simple-7", "episode": 2, "ag')  # a cut line
    committed = {r.episode_uid for r in run_dir.finished()}
    reopened = MemoryConfig().open(
        tmp_path / "memory" / "jitrl", embedder.dim, 0.9, embedder.name, committed.__contains__
    )
    assert reopened.report.uncommitted == 1
    assert len(reopened) == sum(r.steps for r in run_dir.finished() if r.agent == "jitrl")
    rows_before = len(run_dir.finished())
    run_dir2, _ = play(tmp_path, embedder, episodes=3)
    rows = run_dir2.finished()
    assert len(rows) == rows_before + 2  # only episode 2 of each agent was played
    assert len({(r.agent, r.episode) for r in rows}) == len(rows)
