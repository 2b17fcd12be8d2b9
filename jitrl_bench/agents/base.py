"""The agent seam. An agent turns (observation, info) into a Decision; episodes run through a context object so
several episodes can be in flight at once without sharing mutable state."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from jitrl_bench.jitrl.update import jitrl_logits, select
from jitrl_bench.policies.base import Policy, Prompt
from jitrl_bench.records import Decision


@dataclass
class EpisodeContext:
    """Per-episode state: the task, a seeded RNG, the action history, and what the agent wants to remember."""

    task: str
    episode: int
    uid: str
    rng: np.random.Generator
    history: list[tuple[str, str]] = field(default_factory=list)
    """(action, observation) pairs so far."""
    buffer: list[dict[str, Any]] = field(default_factory=list)


class Agent(Protocol):
    name: str

    def start(self, task: str, episode: int, uid: str, seed: int) -> EpisodeContext: ...

    def act(self, ctx: EpisodeContext, observation: str, info: dict[str, Any]) -> Decision: ...

    def finish(self, ctx: EpisodeContext, rewards: Sequence[float], success: bool) -> None:
        """Called once per finished episode with one reward per step (after the reward source)."""
        ...


def action_key(action: str) -> str:
    """Normalised action used to match actions across episodes (text games: case and spacing do not matter)."""
    return " ".join(action.lower().split())


def new_context(task: str, episode: int, uid: str, seed: int) -> EpisodeContext:
    # One stream per (seed, task, episode): a resumed run draws exactly what an uninterrupted one would.
    task_seed = int.from_bytes(task.encode()[:8].ljust(8, b"\0"), "little")
    return EpisodeContext(task, episode, uid, np.random.default_rng([seed, episode, task_seed]))


def decide(
    policy: Policy,
    prompt: Prompt,
    candidates: Sequence[str],
    advantage: np.ndarray,
    beta: float,
    temperature: float,
    rng: np.random.Generator,
) -> tuple[int, np.ndarray, np.ndarray]:
    """Act from z' = z + Â/β; return (index, z, z'). A policy in `choice` mode adds the bias inside the LLM server
    (vLLM's logits processor, or OpenAI `logit_bias`) and samples there; otherwise z' is formed and sampled here."""
    choose = getattr(policy, "choose", None)
    if getattr(policy, "mode", None) == "choice" and callable(choose):
        bias = np.zeros(len(candidates)) if math.isinf(beta) else np.asarray(advantage, dtype=np.float64) / beta
        result = choose(prompt, candidates, bias, temperature, int(rng.integers(2**31)))
        return int(result.index), np.asarray(result.z), np.asarray(result.z_prime)
    z = policy.score(prompt, candidates)
    z_prime = jitrl_logits(z, advantage, beta)
    return select(z_prime, temperature, rng), z, z_prime
