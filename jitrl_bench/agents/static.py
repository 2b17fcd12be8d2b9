"""The frozen policy: act from softmax(z / T) over the candidates. No memory, no learning."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jitrl_bench.agents.base import decide, new_context
from jitrl_bench.checks import Checked, name
from jitrl_bench.contract import BuildContext, EpisodeContext, Policy, StepView, Usage
from jitrl_bench.jitrl.update import softmax
from jitrl_bench.records import Decision, EpisodeRecord, sha1


@dataclass
class StaticConfig(Checked):
    """The training-free baseline: the same policy, prompt and candidates as JitRL, without memory."""

    name: str = "static"

    def check(self) -> None:
        name("name", self.name)

    def build(self, ctx: BuildContext) -> StaticAgent:
        return StaticAgent(self.name, ctx.policy, ctx.temperature)


class StaticAgent:
    learns = False

    def __init__(self, name: str, policy: Policy, temperature: float) -> None:
        self.name = name
        self.policy = policy
        self.temperature = temperature

    def start(self, task: str, episode: int, uid: str, seed: int) -> EpisodeContext:
        return new_context(task, episode, uid, seed)

    def act(self, ctx: EpisodeContext, view: StepView) -> Decision:
        rendered = view.layout.render(view, ctx.history, self.policy.window)
        zeros = np.zeros(len(view.candidates))
        # β = ∞: the same draw as JitRL's with no bias, through the same path (engine or client)
        acted = decide(self.policy, rendered.prompt, view.candidates, zeros, math.inf, self.temperature, ctx.rng)
        return Decision(
            action=view.candidates[acted.index].action,
            index=acted.index,
            candidates=view.actions,
            z=[float(v) for v in acted.z],
            z_prime=acted.z_prime.tolist(),
            advantage=zeros.tolist(),
            probs=softmax(acted.z_prime, self.temperature).tolist(),
            bias_applied=acted.bias_applied,
            usage=acted.usage,
            prompt_cuts=list(rendered.cuts),
            prompt_sha1=sha1(rendered.prompt.text()),
        )

    def finish(self, ctx: EpisodeContext, rewards: Sequence[float], success: bool) -> Usage:
        return Usage()

    def restore(self, finished: Sequence[EpisodeRecord]) -> None:
        return None
