"""The frozen policy: act from softmax(z / T) over the candidates. No memory, no learning."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from jitrl_bench.agents.base import candidates_of, decide, decision, new_context
from jitrl_bench.agents.inputs import Inputs
from jitrl_bench.agents.propose import ProposalConfig
from jitrl_bench.agents.summary import SummaryConfig
from jitrl_bench.checks import Checked, name
from jitrl_bench.contract import BuildContext, EpisodeContext, FinishedEpisode, Policy, StepView, Usage
from jitrl_bench.jitrl.update import softmax
from jitrl_bench.records import Decision, EpisodeRecord


@dataclass
class StaticConfig(Checked):
    """The training-free baseline: the same policy, prompt and candidates as JitRL, without memory."""

    name: str = "static"
    propose: ProposalConfig = field(default_factory=ProposalConfig)
    """Where the candidates come from: the env's list, or the LLM's proposals (set it as for the agents it is
    compared with, so every agent chooses among the same kind of candidates)."""
    summary: SummaryConfig = field(default_factory=SummaryConfig)
    """An LLM-written summary in the state (set it as for the agents it is compared with: same prompts)."""

    def check(self) -> None:
        name("name", self.name)

    def build(self, ctx: BuildContext) -> StaticAgent:
        return StaticAgent(self.name, ctx.policy, ctx.temperature, Inputs(ctx.policy, self.propose, self.summary))


class StaticAgent:
    learns = False
    within_task = True

    def __init__(self, name: str, policy: Policy, temperature: float, inputs: Inputs) -> None:
        self.name = name
        self.policy = policy
        self.temperature = temperature
        self.inputs = inputs

    def start(self, task: str, episode: int, uid: str, seed: int) -> EpisodeContext:
        return new_context(task, episode, uid, seed)

    def act(self, ctx: EpisodeContext, view: StepView) -> Decision:
        inputs = self.inputs(ctx, view)
        candidates = candidates_of(inputs)
        zeros = np.zeros(len(candidates))
        # β = ∞: the same draw as JitRL's with no bias, through the same path (engine or client)
        acted = decide(self.policy, inputs, zeros, math.inf, self.temperature, ctx.rng)
        probs = softmax(acted.z_prime, self.temperature)
        return decision(inputs, candidates, acted.index, acted.z.tolist(), acted.z_prime, probs, zeros,
                        acting=acted.usage, bias_applied=acted.bias_applied)  # fmt: skip

    def finish(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: Sequence[float]) -> Usage:
        self.inputs.forget(ctx)
        return Usage()

    def restore(self, finished: Sequence[EpisodeRecord]) -> None:
        return None
