"""What every learning agent does besides deciding, whatever it learns: start an episode, hand the finished episode
to its `Learner` (or, frozen, write nothing), and account on resume for the episodes already committed. JitRL and
every in-context baseline are subclasses that only give `act`, so none is a special case in the runner."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from jitrl_bench.agents.base import new_context
from jitrl_bench.agents.inputs import Inputs
from jitrl_bench.contract import EpisodeContext, FinishedEpisode, Learner, Usage
from jitrl_bench.records import EpisodeRecord

R = TypeVar("R")


class LearningAgent(Generic[R]):
    learns = True

    def __init__(self, name: str, learner: Learner[R], inputs: Inputs) -> None:
        self.name = name
        self.learner = learner
        self.inputs = inputs

    @property
    def within_task(self) -> bool:
        return self.learner.within_task

    def start(self, task: str, episode: int, uid: str, seed: int) -> EpisodeContext:
        return new_context(task, episode, uid, seed)

    def finish(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: Sequence[float]) -> Usage:
        self.inputs.forget(ctx)
        if self.learner.frozen:  # a memory loaded from another run, read and never written
            self.learner.forget(ctx)
            return Usage()
        return self.learner.write(ctx, episode, rewards)

    def restore(self, finished: Sequence[EpisodeRecord]) -> None:
        self.learner.restore(finished)
