"""The frozen policy: act from softmax(z / T) over the candidates. No memory, no learning."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jitrl_bench.agents.base import EpisodeContext, decide, new_context
from jitrl_bench.agents.prompt import build_prompt
from jitrl_bench.jitrl.update import softmax
from jitrl_bench.policies.base import Policy
from jitrl_bench.records import Decision


@dataclass
class StaticConfig:
    """The training-free baseline: the same policy, prompt and candidates as JitRL, without memory."""

    name: str = "static"
    uses_memory = False

    def build(self, policy: Policy, temperature: float, **_: Any) -> StaticAgent:
        return StaticAgent(self.name, policy, temperature)


class StaticAgent:
    learns = False  # does an episode depend on the previous ones (memory)?

    def __init__(self, name: str, policy: Policy, temperature: float) -> None:
        self.name = name
        self.policy = policy
        self.temperature = temperature

    def start(self, task: str, episode: int, uid: str, seed: int) -> EpisodeContext:
        return new_context(task, episode, uid, seed)

    def act(self, ctx: EpisodeContext, observation: str, info: dict[str, Any]) -> Decision:
        candidates = list(info["candidates"])
        prompt = build_prompt(observation, info, ctx.history)
        zeros = np.zeros(len(candidates))
        i, z, z_prime = decide(self.policy, prompt, candidates, zeros, math.inf, self.temperature, ctx.rng)
        return Decision(
            action=candidates[i],
            index=i,
            candidates=candidates,
            z=z.tolist(),
            z_prime=z_prime.tolist(),
            advantage=zeros.tolist(),
            probs=softmax(z_prime, self.temperature).tolist(),
        )

    def finish(self, ctx: EpisodeContext, rewards: Sequence[float], success: bool) -> None:
        return None
