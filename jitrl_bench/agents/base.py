"""What every agent shares: its episode context, and the one place a decision is drawn from z' = z + Â/β."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from jitrl_bench.contract import Candidate, EpisodeContext, Policy, Prompt, Usage
from jitrl_bench.jitrl.update import jitrl_logits, select

ENGINE = "engine"
CLIENT = "client"


def new_context(task: str, episode: int, uid: str, seed: int) -> EpisodeContext:
    # One stream per (seed, task, episode): a resumed run draws exactly what an uninterrupted one would.
    task_seed = int.from_bytes(task.encode()[:8].ljust(8, b"\0"), "little")
    return EpisodeContext(task, episode, uid, np.random.default_rng([seed, episode, task_seed]))


@dataclass(frozen=True)
class Acted:
    """One drawn action: its index, z and z' = z + Â/β, what the LLM calls cost, and where the bias was added."""

    index: int
    z: np.ndarray
    z_prime: np.ndarray
    usage: Usage
    bias_applied: str
    """"engine": added to the option logits inside the LLM server, which sampled the action from π*;
    "client": added to z here, and the action drawn here."""


def option_text(candidate: Candidate) -> str:
    """A candidate as a numbered option shows it: the action, and its label when that says more."""
    return candidate.action if candidate.label == candidate.action else f"{candidate.action} ({candidate.label})"


def decide(
    policy: Policy,
    prompt: Prompt,
    candidates: tuple[Candidate, ...],
    advantage: np.ndarray,
    beta: float,
    temperature: float,
    rng: np.random.Generator,
) -> Acted:
    """Act from π* ∝ π_θ·exp(Â/β), i.e. z' = z + Â/β. A policy that can (vLLM or an OpenAI-compatible server in
    choice mode) adds the bias inside its engine and samples there; otherwise z' is formed and sampled here."""
    chooser = policy.chooser()
    if chooser is not None:
        bias = np.zeros(len(candidates)) if math.isinf(beta) else np.asarray(advantage, dtype=np.float64) / beta
        options = [option_text(c) for c in candidates]
        choice = chooser.choose(prompt, options, bias, temperature, int(rng.integers(2**31)))
        return Acted(choice.index, choice.z, choice.z_prime, choice.usage, choice.site)
    scored = policy.score(prompt, [c.action for c in candidates])
    z_prime = jitrl_logits(scored.z, advantage, beta)
    return Acted(select(z_prime, temperature, rng), scored.z, z_prime, scored.usage, CLIENT)
