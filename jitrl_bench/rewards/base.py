"""The reward seam: a finished episode in, one reward per step out, with what producing them cost."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from jitrl_bench.checks import Checked, finite
from jitrl_bench.contract import FinishedEpisode, Policy, StepTrace, Usage

__all__ = ["FinishedEpisode", "StepTrace"]  # re-exported: the seam lives in contract/agent.py


@dataclass(frozen=True)
class Rewards:
    values: list[float]
    """One reward per step, r_0..r_T (memory stores r_t..r_T with step t)."""
    usage: Usage = field(default_factory=Usage)
    record: dict[str, Any] = field(default_factory=dict)
    """What to keep in the run directory (rewards/<task>/<agent>/<episode>.json); empty: nothing to keep."""
    fallback: str = ""
    """Non-empty when the source could not score the episode and the env's rewards stand in: why."""
    model: str = ""
    """The model whose calls `usage` counts (empty: no LLM was called)."""


class RewardSource(Protocol):
    def rewards(self, episode: FinishedEpisode) -> Rewards: ...


class RewardConfig(Protocol):
    """What a `configs/reward/*.yaml` builds."""

    name: str

    @property
    def zero_fill(self) -> bool:
        """Memory's return rule: True replaces each zero future reward by the step's own reward when G is computed
        (the reference code's quirk, off unless asked for)."""
        ...

    def make(self, acting: Policy) -> RewardSource: ...


def env_rewards(deltas: Sequence[float], won: bool, success_reward: float, failure_reward: float) -> list[float]:
    """Score deltas, plus a terminal bonus on success and a penalty otherwise (lost or out of steps)."""
    rewards = [float(r) for r in deltas]
    if rewards:
        rewards[-1] += success_reward if won else failure_reward
    return rewards


@dataclass
class EnvRewardsConfig(Checked):
    """The env's own signal (configs/reward/env.yaml)."""

    name: str = "env"
    success_reward: float = 10.0
    """Added to the last step of an episode that was won."""
    failure_reward: float = 0.0
    """Added to the last step of an episode that was not won (lost or out of budget)."""
    zero_fill: bool = False

    def check(self) -> None:
        finite("success_reward", self.success_reward)
        finite("failure_reward", self.failure_reward)

    def make(self, acting: Policy) -> EnvRewards:
        return EnvRewards(self.success_reward, self.failure_reward)


@dataclass(frozen=True)
class EnvRewards:
    success_reward: float = 10.0
    failure_reward: float = 0.0

    def rewards(self, episode: FinishedEpisode) -> Rewards:
        deltas = [step.env_reward for step in episode.steps]
        return Rewards(env_rewards(deltas, episode.won, self.success_reward, self.failure_reward))
