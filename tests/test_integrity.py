"""What a run writes stays readable: a resume after its memory's embeddings file was cut, and a game whose text
holds lone surrogates, both complete with files that read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from typer.testing import CliRunner

from jitrl_bench.agents.jitrl import JitRLConfig
from jitrl_bench.agents.recall import GivenMemories
from jitrl_bench.cli import app
from jitrl_bench.contract import BuildContext
from jitrl_bench.envs.text.game import GameBackend, TextGameEnv
from jitrl_bench.envs.text.textworld import TextWorldConfig
from jitrl_bench.memory.store import ExperienceMemory, MemoryConfig
from jitrl_bench.policies.uniform import UniformPolicy
from jitrl_bench.run.episode import Provenance, RunConfig
from jitrl_bench.run.local import run_all
from jitrl_bench.run.rundir import RunDirectory

FAST = ["policy=uniform", "run.progress=false", "run.episodes=2", "run.max_steps=4"]


def test_a_run_resumed_after_its_embeddings_file_was_cut_completes_with_consistent_memory(
    tmp_path: Path, embedder
) -> None:
    """The embeddings file loses rows (and half a row) of committed and uncommitted episodes: the resume cuts the
    records back to the rows that remain (one warning line), replays the uncommitted episode, and every entry's row
    is its own. Mutant caught (tried): not truncating entries.jsonl at the cut: the replayed episode's rows land
    under the stale records' ids 2..5, and its own records are never read."""
    run_dir = tmp_path / "run"
    args = ["run", *FAST, f"run.dir={run_dir}"]
    assert CliRunner().invoke(app, args).exit_code == 0
    episodes = run_dir / "episodes.jsonl"
    rows = episodes.read_text().splitlines()
    assert [json.loads(r)["agent"] for r in rows] == ["jitrl", "static", "jitrl", "static"]
    episodes.write_text("\n".join(rows[:2] + rows[3:]) + "\n")  # jitrl's episode 1: written to memory, not committed
    folder = run_dir / "memory" / "jitrl"
    with open(folder / "embeddings.f32", "r+b") as f:
        f.truncate(2 * embedder.dim * 4 + 100)  # two rows of episode 0 and part of a third remain
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning: memory")]
    assert len(warning) == 1 and "cut back to 2 entries" in warning[0] and "embedding rows are missing" in warning[0]
    finished = [json.loads(r) for r in episodes.read_text().splitlines()]
    assert sorted((r["agent"], r["episode"]) for r in finished) == [(a, e) for a in ("jitrl", "static") for e in (0, 1)]
    memory = ExperienceMemory(
        folder, embedder.dim, gamma=0.9, committed={r["episode_uid"] for r in finished}.__contains__
    )
    records = list(memory.records())
    replayed = next(r for r in finished if (r["agent"], r["episode"]) == ("jitrl", 1))
    assert memory.report.dropped == [] and [r["id"] for r in records] == list(range(2 + replayed["steps"]))
    assert [r["episode"] for r in records[2:]] == [replayed["episode_uid"]] * replayed["steps"]
    assert (folder / "embeddings.f32").stat().st_size == len(records) * embedder.dim * 4
    stored = memory.embeddings_of([r["id"] for r in records])
    # encoded here in one batch, in the run a step at a time: rounding only, within 1e-5 (about 2x the sqrt(n)·eps
    # budget test_cluster.py derives for these unit vectors); a row stored under another entry's id is ~0.05 off
    np.testing.assert_allclose(stored, embedder.encode([r["state"] for r in records]), rtol=0, atol=1e-5)


class BrokenText:
    """The real TextWorld game, its text read as an interpreter's bytes decoded with `surrogateescape` would be: lone
    surrogates in replies, state fields and commands (outside the subject: the env's cleaning and the commit are)."""

    def __init__(self, game: GameBackend) -> None:
        self.game = game

    @property
    def score(self) -> float:
        return self.game.score

    @property
    def max_score(self) -> float:
        return self.game.max_score

    @property
    def won(self) -> bool:
        return self.game.won

    @property
    def lost(self) -> bool:
        return self.game.lost

    def reset(self, seed: int | None) -> str:
        return self.game.reset(seed) + " \udcff\ud83d"

    def step(self, command: str) -> str:
        return "\ud83d " + self.game.step(command)

    def candidates(self) -> list[str]:
        return [*self.game.candidates(), "look \udce9"]

    def state_fields(self) -> dict[str, str]:
        return {k: f"{v} \udcff" for k, v in self.game.state_fields().items()}

    def played(self) -> dict[str, str]:
        return self.game.played()

    def goal(self) -> str:
        return self.game.goal() + " \udcff"

    def walkthrough(self) -> list[str]:
        return self.game.walkthrough()

    def close(self) -> None:
        self.game.close()


def test_a_game_whose_text_holds_lone_surrogates_commits_and_resumes(tmp_path: Path, embedder) -> None:
    """Observations, state fields and candidates with lone surrogates reach the step records and the memory valid;
    the run commits, and its resume reads everything back. Mutants caught (tried): `clean_command` without `valid_text`
    (UnicodeEncodeError on the candidate); `clean_text` without its charset filter and `valid_text` (the embedder's
    tokenizer refuses the state text)."""
    env_config = TextWorldConfig(seeds=[7])

    def make(task: str) -> TextGameEnv:
        env = env_config.make(task)
        return TextGameEnv(BrokenText(env.backend), task)

    memory = MemoryConfig().open(tmp_path / "memory" / "jitrl", embedder.dim, 0.9, embedder.name)
    ctx = BuildContext(UniformPolicy(), 1.0, GivenMemories(embedder, lambda agent, gamma: memory))
    protocol = Provenance("textworld", "uniform", "run-1", "abc")
    for episodes in (1, 2):  # a run, then its resume with one more episode
        run = RunConfig(episodes=episodes, max_steps=4, seed=3, progress=False)
        agent = JitRLConfig().build(ctx)
        run_all(RunDirectory(tmp_path), env_config.task_names(), make, [agent], run, protocol, Console(quiet=True))
    assert [r.episode for r in RunDirectory(tmp_path).finished()] == [0, 1]
    steps = [json.loads(line) for e in (0, 1) for line in (tmp_path / "steps" / "tw-simple-7" / "jitrl" /
             f"{e}.jsonl").read_text(encoding="utf-8").splitlines()]  # fmt: skip
    assert steps and all("look" in s["decision"]["candidates"] for s in steps)
    reopened = ExperienceMemory(tmp_path / "memory" / "jitrl", embedder.dim, gamma=0.9)
    assert len(reopened) == len(steps) and reopened.report.dropped == []
