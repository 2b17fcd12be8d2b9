"""What every agent shares: its episode context, the one place a decision is drawn from z' = z + Â/β, and the one
way a decision is recorded."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jitrl_bench.agents.inputs import StepInputs, log_p
from jitrl_bench.contract import ACTING, Candidate, EpisodeContext, Ledger, Policy, Usage
from jitrl_bench.jitrl.update import jitrl_logits, select
from jitrl_bench.records import Decision, sha1

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


def candidates_of(inputs: StepInputs) -> tuple[Candidate, ...]:
    """What the agent chooses among: the LLM's proposals when it made them, else the env's candidates."""
    return inputs.proposal.candidates if inputs.proposal is not None else inputs.view.candidates


def decide(
    policy: Policy, inputs: StepInputs, advantage: np.ndarray, beta: float, temperature: float, rng: np.random.Generator
) -> Acted:
    """Act from π* ∝ π_θ·exp(Â/β), i.e. z' = z + Â/β. A policy that can (vLLM or an OpenAI-compatible server in
    choice mode) adds the bias inside its engine and samples there; otherwise z' is formed and sampled here. With
    proposals, z = log p of the proposal's base scores, and the draw is here."""
    if inputs.proposal is not None:
        z = log_p(inputs.proposal.p)
        z_prime = jitrl_logits(z, advantage, beta)
        return Acted(select(z_prime, temperature, rng), z, z_prime, Usage(), CLIENT)
    candidates = inputs.view.candidates
    chooser = policy.chooser()
    if chooser is not None:
        bias = np.zeros(len(candidates)) if math.isinf(beta) else np.asarray(advantage, dtype=np.float64) / beta
        options = [option_text(c) for c in candidates]
        choice = chooser.choose(inputs.rendered.prompt, options, bias, temperature, int(rng.integers(2**31)))
        return Acted(choice.index, choice.z, choice.z_prime, choice.usage, choice.site)
    scored = policy.score(inputs.rendered.prompt, [c.action for c in candidates])
    z_prime = jitrl_logits(scored.z, advantage, beta)
    return Acted(select(z_prime, temperature, rng), scored.z, z_prime, scored.usage, CLIENT)


def decision(
    inputs: StepInputs,
    candidates: Sequence[Candidate],
    index: int,
    z: Sequence[float | None],
    z_prime: np.ndarray,
    probs: np.ndarray,
    advantage: np.ndarray,
    *,
    acting: Usage,
    bias_applied: str,
    neighbours: list[dict[str, Any]] | None = None,
    notes: dict[str, Any] | None = None,
) -> Decision:
    """The trace of one decision: what was chosen among what, z, Â, z', π*, the neighbours, where the bias went,
    what the step's LLM calls cost by purpose, and how the prompt was cut."""
    ledger = Ledger()
    ledger.merge(inputs.ledger.by_purpose)
    ledger.charge(ACTING, acting)
    return Decision(
        action=candidates[index].action,
        index=index,
        candidates=[c.action for c in candidates],
        z=[None if v is None else float(v) for v in z],
        advantage=advantage.tolist(),
        z_prime=z_prime.tolist(),
        probs=probs.tolist(),
        neighbours=neighbours or [],
        notes={**(notes or {}), **inputs.notes()},
        bias_applied=bias_applied,
        usage=ledger.total,
        usage_by_purpose=dict(ledger.by_purpose),
        prompt_cuts=list(inputs.rendered.cuts),
        prompt_sha1=sha1(inputs.rendered.prompt.text()),
        proposal_fallback=inputs.fallback,
    )
