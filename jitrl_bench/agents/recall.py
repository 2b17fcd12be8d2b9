"""The memory side every JitRL agent shares (its `Learner`): recall the neighbours N(s) of a step, and write a
finished episode's steps to memory with their rewards-to-go. Kept out of the agents so each reads as its own
algorithm; `prompt_update` reads the same memory the same way and puts the neighbours in the prompt instead."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from jitrl_bench.contract import BuildContext, EpisodeContext, FinishedEpisode, StepView, Usage
from jitrl_bench.jitrl.retrieval import LexicalConfig, retrieve
from jitrl_bench.memory.embed import Embedder
from jitrl_bench.memory.notebook import Notebook
from jitrl_bench.memory.returns import rewards_to_go
from jitrl_bench.memory.store import Experience, ExperienceMemory, Neighbour
from jitrl_bench.records import EpisodeRecord
from jitrl_bench.timing import RETRIEVAL, spent


def state_text(state: dict[str, str]) -> str:
    """The text that is embedded for retrieval: the named fields in a stable order."""
    return "\n".join(f"{k}: {v.strip()}" for k, v in sorted(state.items()) if v and v.strip())


@dataclass(frozen=True)
class Recalled:
    """One step as memory will store it once its episode ends."""

    embedding: np.ndarray
    fields: dict[str, str]
    action: str
    key: str


@dataclass(frozen=True)
class RecallSettings:
    """How neighbours are retrieved: k, the cosine floor, and the optional lexical re-rank."""

    k: int
    threshold: float
    lexical: LexicalConfig | None = None


@dataclass(frozen=True)
class Recollection:
    """What memory says about one step: the state's embedding and its neighbours N(s)."""

    embedding: np.ndarray
    neighbours: list[Neighbour]


class EpisodeRecall:
    """JitRL's `Learner`: N(s) for each step of an episode, and the episode's steps written to memory when it ends."""

    def __init__(
        self,
        name: str,
        memory: ExperienceMemory,
        embedder: Embedder,
        settings: RecallSettings,
        ctx: BuildContext,
    ) -> None:
        self.name = name
        self.memory = memory
        self.embedder = embedder
        self.settings = settings
        self.run_id = ctx.run_id
        self.config_hash = ctx.config_hash
        self.frozen = ctx.memories.frozen
        self.within_task = "task" in memory.partition_by
        self.episodes_done: dict[str, int] = {}
        """Episodes already in memory per task (the paper's w schedule reads it)."""
        self._steps: dict[str, list[Recalled]] = {}
        self._lock = threading.Lock()

    def neighbours(
        self, ctx: EpisodeContext, view: StepView, k: int, threshold: float, lexical: LexicalConfig | None
    ) -> tuple[np.ndarray, list[Neighbour]]:
        """The state's embedding and its neighbours in memory (inside the task's partition)."""
        fields = dict(view.state)
        embedding = self.embedder.encode([state_text(fields)])[0]
        where = {"task": ctx.task, **fields}
        with spent(RETRIEVAL):
            return embedding, retrieve(self.memory, embedding, where, len(ctx.history), k, threshold, lexical)

    def read(self, ctx: EpisodeContext, view: StepView) -> Recollection:
        settings = self.settings
        embedding, found = self.neighbours(ctx, view, settings.k, settings.threshold, settings.lexical)
        return Recollection(embedding, found)

    def note(self, ctx: EpisodeContext, embedding: np.ndarray, view: StepView, action: str, key: str) -> None:
        """Keep the step taken, to be written when the episode ends."""
        with self._lock:
            self._steps.setdefault(ctx.uid, []).append(Recalled(embedding, dict(view.state), action, key))

    def write(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: Sequence[float]) -> Usage:
        """Write every step of the finished episode to memory with its rewards-to-go r_t..r_T (no LLM call)."""
        self.remember(ctx, rewards, episode.won)
        return Usage()

    def forget(self, ctx: EpisodeContext) -> None:
        with self._lock:
            self._steps.pop(ctx.uid, None)
            self.episodes_done[ctx.task] = self.episodes_done.get(ctx.task, 0) + 1

    def remember(self, ctx: EpisodeContext, rewards: Sequence[float], success: bool) -> None:
        with self._lock:
            steps = self._steps.pop(ctx.uid, [])
        if len(rewards) != len(steps):
            raise ValueError(f"{len(rewards)} rewards for {len(steps)} steps")
        experiences = [
            Experience(
                state=state_text(s.fields),
                fields=s.fields,
                action=s.action,
                action_key=s.key,
                rewards=future,
                episode=ctx.uid,
                task=ctx.task,
                step=t,
                success=success,
                run_id=self.run_id,
                config_hash=self.config_hash,
            )
            for t, (s, future) in enumerate(zip(steps, rewards_to_go(rewards), strict=True))
        ]
        if experiences:
            self.memory.add(experiences, np.stack([s.embedding for s in steps]))
        with self._lock:
            self.episodes_done[ctx.task] = self.episodes_done.get(ctx.task, 0) + 1

    def restore(self, finished: Sequence[EpisodeRecord]) -> None:
        """Count the episodes of this agent already committed (their steps are in memory already)."""
        for record in finished:
            if record.agent == self.name and record.episode >= 0 and record.status != "error":
                self.episodes_done[record.task] = self.episodes_done.get(record.task, 0) + 1


def traced(neighbours: Sequence[Neighbour]) -> list[dict[str, object]]:
    """The neighbours as a decision trace shows them."""
    return [
        {"id": nb.id, "similarity": round(nb.similarity, 4), "return": nb.ret, "action": nb.action_key}
        for nb in neighbours
    ]


class GivenMemories:
    """`Memories` for code that builds agents itself (benchmarks, tests): one memory per agent name, made by
    `open_memory(agent, gamma)`, and notebooks in memory; no memory at all when it is None (agents that need one
    then fail loudly)."""

    frozen = False

    def __init__(
        self, embedder: Embedder | None = None, open_memory: Callable[[str, float], ExperienceMemory] | None = None
    ) -> None:
        self._embedder = embedder
        self.open_memory = open_memory
        self._notebooks: dict[str, Notebook] = {}

    def open(self, agent: str, gamma: float) -> tuple[ExperienceMemory, Embedder]:
        if self.open_memory is None:
            raise RuntimeError(f"agent {agent!r} needs a memory, and none was given")
        return self.open_memory(agent, gamma), self.embedder()

    def notebook(self, agent: str) -> Notebook:
        return self._notebooks.setdefault(agent, Notebook(None))

    def embedder(self) -> Embedder:
        if self._embedder is None:
            raise RuntimeError("an agent needs an embedder, and none was given")
        return self._embedder
