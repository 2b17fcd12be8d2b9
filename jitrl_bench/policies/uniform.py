"""The uniform policy: every candidate gets the same logit, so the agent acts at random (at T > 0).

A real baseline in text games ("random agent"), a model-free way to check an environment set-up, and the policy the
runner's plumbing tests use. JitRL on top of it is pure memory-driven control. It makes no LLM calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jitrl_bench.checks import Checked, name
from jitrl_bench.contract import BiasedChooser, Completer, Generator, Prompt, Scored, ServeSpec, Usage
from jitrl_bench.policies.tokens import ApproxWindow


@dataclass
class UniformPolicyConfig(Checked):
    name: str = "uniform"
    """The policy's name in results."""

    def check(self) -> None:
        name("name", self.name)

    def make(self) -> UniformPolicy:
        return UniformPolicy(self.name)

    def serve_spec(self) -> ServeSpec | None:
        return None


class UniformPolicy:
    def __init__(self, name: str = "uniform") -> None:
        self.name = name
        self.hardware = "none"
        self.window = ApproxWindow()

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> Scored:
        return Scored(np.full(len(candidates), -np.log(max(len(candidates), 1))), Usage())

    def chooser(self) -> BiasedChooser | None:
        return None

    def generator(self) -> Generator | None:
        return None

    def completer(self) -> Completer | None:
        return None

    def close(self) -> None:
        return None
