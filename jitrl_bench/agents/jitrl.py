"""JitRL: a frozen policy improved at test time by a memory of past steps and their returns.

    one decision                                         end of an episode
    z   = log π_θ(a|s) over the candidates               G_t = Σ_u γ^u r_{t+u}   (applied when memory is read)
    N   = neighbours of s in memory                      memory ← {(s_t, a_t, r_t..r_T)} for every step t
    Â   = Q̂(s,a) − V̂(s) from the neighbours' returns
    z'  = z + Â/β ;  a ~ softmax(z'/T)  (argmax at T = 0)

No gradient update anywhere. The environment never appears here: states arrive as named text fields.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jitrl_bench.agents.base import EpisodeContext, action_key, decide, new_context
from jitrl_bench.agents.prompt import build_prompt
from jitrl_bench.envs.base import state_text
from jitrl_bench.jitrl.advantage import adaptive_exploration, clean_advantage, paper_advantage, paper_weight
from jitrl_bench.jitrl.embed import Embedder
from jitrl_bench.jitrl.memory import Experience, ExperienceMemory
from jitrl_bench.jitrl.retrieval import LexicalConfig, retrieve
from jitrl_bench.jitrl.returns import rewards_to_go
from jitrl_bench.jitrl.update import paper_scores, softmax
from jitrl_bench.policies.base import Policy
from jitrl_bench.records import Decision


@dataclass
class PaperConfig:
    """The reference code's rules (used when estimator = paper)."""

    alpha: float = 1.0
    """Optimism bonus α/n given to an unseen candidate with probability λ."""
    exploration: float | None = None
    """λ; None = the Jericho rule (adaptive in [0.05, 0.8] from the returns' spread); the web code uses 0.05."""
    w_start: float = 1.0
    """Weight w of the normalised advantage in p + w·Ã, at the first episode..."""
    w_end: float = 1.5
    """... growing linearly to this ..."""
    w_ramp: int = 50
    """... over this many episodes."""
    add_memory_actions: bool = True
    """Append memory actions the policy did not propose as candidates (p = 0) when their mean return is > 0."""


@dataclass
class JitRLConfig:
    """Hyperparameters of JitRL. β and k are the paper's two headline knobs."""

    name: str = "jitrl"
    beta: float = 1.0
    """KL strength β in z' = z + Â/β: small trusts memory more, inf recovers the frozen policy exactly."""
    k: int = 10
    """Neighbours retrieved per decision."""
    gamma: float = 0.9
    """Discount γ of the returns G_t = Σ_u γ^u r_{t+u} (applied at query time)."""
    threshold: float = 0.8
    """Minimum cosine similarity of a neighbour's state to the current state."""
    estimator: str = "clean"
    """`clean`: similarity-weighted Q̂/V̂ and z + Â/β. `paper`: the reference code's rules and p + w·Ã (argmax)."""
    bonus: float = 0.0
    """Count-based optimism for the clean estimator: Â += bonus / sqrt(1 + n_a)."""
    lexical: LexicalConfig | None = None
    """The paper's lexical re-rank of the top-`recall` embedding neighbours (None: plain cosine top-k)."""
    paper: PaperConfig = field(default_factory=PaperConfig)

    uses_memory = True

    def build(
        self,
        policy: Policy,
        temperature: float,
        memory: ExperienceMemory,
        embedder: Embedder,
        provenance: tuple[str, str] = ("", ""),
        **_: Any,
    ) -> JitRLAgent:
        if self.estimator not in ("clean", "paper"):
            raise ValueError(f"agent.estimator must be 'clean' or 'paper', got {self.estimator!r}")
        return JitRLAgent(self, policy, temperature, memory, embedder, provenance)


class JitRLAgent:
    learns = True  # does an episode depend on the previous ones (memory)?

    def __init__(
        self,
        cfg: JitRLConfig,
        policy: Policy,
        temperature: float,
        memory: ExperienceMemory,
        embedder: Embedder,
        provenance: tuple[str, str] = ("", ""),
    ) -> None:
        self.run_id, self.config_hash = provenance
        self.name = cfg.name
        self.cfg = cfg
        self.policy = policy
        self.temperature = temperature
        self.memory = memory
        self.embedder = embedder
        self.episodes_done: dict[str, int] = {}
        """Episodes already in memory per task (the paper's w schedule reads it)."""

    def start(self, task: str, episode: int, uid: str, seed: int) -> EpisodeContext:
        return new_context(task, episode, uid, seed)

    def act(self, ctx: EpisodeContext, observation: str, info: dict[str, Any]) -> Decision:
        cfg = self.cfg
        candidates = list(info["candidates"])
        keys = list(info.get("action_keys") or [action_key(c) for c in candidates])  # web: role[label], not ids
        prompt = build_prompt(observation, info, ctx.history)
        # 1. neighbours N(s) of the current state in memory (same task partition)
        fields = dict(info["state"])
        embedding = self.embedder.encode([state_text(fields)])[0]
        where = {"task": ctx.task, **fields}
        neighbours = retrieve(self.memory, embedding, where, len(ctx.history), cfg.k, cfg.threshold, cfg.lexical)
        # 2-4. Â = Q̂ − V̂, then act from z' = z + Â/β, z = log π_θ(a|s) (in the LLM server when the policy can)
        if cfg.estimator == "clean":
            adv = clean_advantage(keys, neighbours, cfg.bonus)
            index, z, z_prime = decide(self.policy, prompt, candidates, adv.values, cfg.beta, self.temperature, ctx.rng)
            probs = softmax(z_prime, self.temperature)
            notes: dict[str, Any] = {"v": adv.v}
        else:
            z = self.policy.score(prompt, candidates)
            p = cfg.paper
            lam = p.exploration if p.exploration is not None else adaptive_exploration(neighbours)
            bonus_rng = random.Random(int(ctx.rng.integers(2**63)))
            adv = paper_advantage(
                keys, neighbours, exploration=lam, rng=bonus_rng, alpha=p.alpha, add_memory_actions=p.add_memory_actions
            )
            candidates += adv.keys[len(keys) :]  # memory actions the policy did not propose, with p = 0
            base = np.concatenate([softmax(z), np.zeros(len(adv.keys) - len(keys))])
            w = paper_weight(self.episodes_done.get(ctx.task, 0), p.w_start, p.w_end, p.w_ramp)
            z_prime = paper_scores(base, adv.values, w)  # p + w·Ã: probabilities, not logits
            index = int(np.argmax(z_prime))
            probs = softmax(z_prime, 0)
            z = np.concatenate([z, np.full(len(adv.keys) - len(keys), np.nan)])  # no policy logit for those
            notes = {"v": adv.v, "lambda": lam, "w": w, "memory_actions": adv.keys[len(keys) :]}
        action = candidates[index]
        key = keys[index] if index < len(keys) else adv.keys[index]
        ctx.buffer.append({"embedding": embedding, "fields": fields, "action": action, "key": key})
        return Decision(
            action=action,
            index=index,
            candidates=candidates,
            z=[None if np.isnan(v) else float(v) for v in z],
            advantage=adv.values.tolist(),
            z_prime=z_prime.tolist(),
            probs=probs.tolist(),
            neighbours=[
                {"id": nb.id, "similarity": round(nb.similarity, 4), "return": nb.ret, "action": nb.action_key}
                for nb in neighbours
            ],
            notes=notes,
        )

    def finish(self, ctx: EpisodeContext, rewards: Sequence[float], success: bool) -> None:
        """Write every step of the finished episode to memory with its rewards-to-go r_t..r_T."""
        steps = ctx.buffer
        if len(rewards) != len(steps):
            raise ValueError(f"{len(rewards)} rewards for {len(steps)} steps")
        experiences = [
            Experience(
                state=state_text(s["fields"]),
                fields=s["fields"],
                action=s["action"],
                action_key=s["key"],
                rewards=future,
                episode=ctx.uid,
                task=ctx.task,
                step=t,
                success=success,
                run_id=self.run_id,
                config_hash=self.config_hash,
            )
            for t, (s, future) in enumerate(zip(steps, rewards_to_go(rewards), strict=True))
        ]
        if experiences:
            self.memory.add(experiences, np.stack([s["embedding"] for s in steps]))
        self.episodes_done[ctx.task] = self.episodes_done.get(ctx.task, 0) + 1
