"""Returns and the reward source. G_t = Σ_u γ^u r_{t+u}, computed when memory is read, so γ never gets baked in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from jitrl_bench.checks import Checked, finite


def discounted_return(rewards: Sequence[float], gamma: float) -> float:
    """G = r_0 + γ r_1 + γ² r_2 + ... (Horner's rule, from the end)."""
    g = 0.0
    for r in reversed(rewards):
        g = float(r) + gamma * g
    return g


def rewards_to_go(rewards: Sequence[float]) -> list[list[float]]:
    """For each step t, the list r_t..r_T that memory stores with that step."""
    return [list(map(float, rewards[t:])) for t in range(len(rewards))]


class RewardSource(Protocol):
    """Turns a finished episode into one reward per step (env rewards now; an LLM step evaluator later)."""

    def rewards(self, score_deltas: Sequence[float], won: bool, lost: bool) -> list[float]: ...


@dataclass
class EnvRewards(Checked):
    """The environment's own signal: score deltas, plus a terminal bonus on success and a penalty on failure."""

    success_reward: float = 10.0
    """Added to the last step of an episode that was won."""
    failure_reward: float = 0.0
    """Added to the last step of an episode that was not won (lost or out of budget)."""

    def check(self) -> None:
        finite("success_reward", self.success_reward)
        finite("failure_reward", self.failure_reward)

    def rewards(self, score_deltas: Sequence[float], won: bool, lost: bool) -> list[float]:
        rewards = [float(r) for r in score_deltas]
        if rewards:
            rewards[-1] += self.success_reward if won else self.failure_reward
        return rewards
