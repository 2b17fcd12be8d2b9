"""A finished episode, agents, learners, and an agent's config (what it is built from: the policy and memories)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from jitrl_bench.contract.env import StepView, Turn
from jitrl_bench.contract.policy import Policy
from jitrl_bench.memory.memories import Memories
from jitrl_bench.records import Decision, EpisodeRecord, Usage

# ---- a finished episode -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepTrace:
    """One step as a reward source reads it: the state the agent acted in, its action, the env's reward."""

    observation: str
    action: str
    env_reward: float


@dataclass(frozen=True)
class FinishedEpisode:
    """A whole episode once it is over: what reward sources score and what learning agents learn from."""

    task: str
    goal: str
    steps: tuple[StepTrace, ...]
    final_observation: str
    won: bool
    score: float
    max_score: float


# ---- agents -------------------------------------------------------------------------------------------------------


@dataclass
class EpisodeContext:
    """Per-episode state the runner hands back to the agent at each step: a seeded RNG and the history so far."""

    task: str
    episode: int
    uid: str
    rng: np.random.Generator
    history: list[Turn] = field(default_factory=list)


class Agent(Protocol):
    name: str
    learns: bool
    """Does an episode depend on the earlier ones (memory)? The runner then plays a task's episodes in order."""

    @property
    def within_task(self) -> bool:
        """Nothing learned on one task is read on another (true of an agent that learns nothing): the scheduler may
        then play each task's episodes anywhere, apart from the other tasks' (`run/streams.py`)."""
        ...

    def start(self, task: str, episode: int, uid: str, seed: int) -> EpisodeContext: ...

    def act(self, ctx: EpisodeContext, view: StepView) -> Decision: ...

    def finish(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: Sequence[float]) -> Usage:
        """Called once per finished episode with one reward per step; returns what learning from it cost."""
        ...

    def restore(self, finished: Sequence[EpisodeRecord]) -> None:
        """On resume: the episodes already committed (e.g. to continue a schedule that counts episodes)."""
        ...


Read = TypeVar("Read", covariant=True)


class Learner(Protocol[Read]):
    """A learning agent's memory as a plug-in: what the agent reads from it before a step (or, for methods that
    read once per episode, at its first step), and what it writes after an episode. JitRL reads neighbours and
    writes steps with their returns; the in-context baselines read text for the prompt and write notes. A frozen
    learner (`memory.frozen`, a memory loaded from another run) is read and never written."""

    frozen: bool

    @property
    def within_task(self) -> bool:
        """What is written on one task is read only on that task (memory partitioned by task, notes per task)."""
        ...

    def read(self, ctx: EpisodeContext, view: StepView) -> Read: ...

    def write(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: Sequence[float]) -> Usage:
        """Learn from a finished episode (one reward per step); returns what its LLM calls cost."""
        ...

    def forget(self, ctx: EpisodeContext) -> None:
        """Drop what was kept for an episode that will not be written (a frozen learner's)."""
        ...

    def restore(self, finished: Sequence[EpisodeRecord]) -> None:
        """On resume: account for the episodes already committed (their writes are on disk already)."""
        ...


@dataclass(frozen=True)
class BuildContext:
    """What an agent config gets to build its agent: the shared policy, the run's settings, and memory."""

    policy: Policy
    temperature: float
    memories: Memories
    run_id: str = ""
    config_hash: str = ""


class AgentConfig(Protocol):
    name: str

    def build(self, ctx: BuildContext) -> Agent: ...
