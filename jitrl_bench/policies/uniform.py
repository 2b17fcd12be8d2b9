"""The uniform policy: every candidate gets the same logit, so the agent acts at random (at T > 0).

A real baseline in text games ("random agent"), a model-free way to check an environment set-up, and the policy the
runner's plumbing tests use. JitRL on top of it is pure memory-driven control.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jitrl_bench.policies.base import Prompt


@dataclass
class UniformPolicyConfig:
    name: str = "uniform"

    def make(self) -> UniformPolicy:
        return UniformPolicy(self.name)


class UniformPolicy:
    def __init__(self, name: str = "uniform") -> None:
        self.name = name
        self.tokens_used = 0

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> np.ndarray:
        return np.full(len(candidates), -np.log(max(len(candidates), 1)))

    def generate(self, prompt: Prompt, max_new_tokens: int = 64) -> str:
        return ""
