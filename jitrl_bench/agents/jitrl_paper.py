"""JitRL as the authors' reference code decides, rule by rule (facts: shared notes, JITRL.md):

    p   = π_θ(a|s) over the candidates (probabilities, not logits)
    N   = neighbours of s: embedding recall, then the lexical re-rank
    Ã   = paper_advantage(...)   mean Q̂/V̂, λ-bonus α/n for unseen candidates, memory actions added as candidates,
                                  divided by the largest positive Â
    a   = argmax_a  p(a) + w·Ã(a),  w growing 1.0 → 1.5 over 50 episodes

It is not the KL closed form (the bias goes onto probabilities), so it is always applied here, never in the engine.
Memory actions join only when they can be done now: text games take any command; on the web a remembered
`click link[X]` must ground to an element with that role and label on the current page, else it is dropped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from jitrl_bench.agents.base import CLIENT
from jitrl_bench.agents.jitrl import check_beta
from jitrl_bench.agents.recall import EpisodeRecall, RecallingAgent, traced
from jitrl_bench.checks import Checked, at_least, between, name
from jitrl_bench.contract import BuildContext, Candidate, EpisodeContext, Policy, StepView
from jitrl_bench.jitrl.advantage import adaptive_exploration, paper_advantage, paper_weight
from jitrl_bench.jitrl.retrieval import LexicalConfig
from jitrl_bench.jitrl.update import paper_scores, softmax
from jitrl_bench.records import Decision, sha1


@dataclass
class PaperRules(Checked):
    """The reference code's constants."""

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
    """Append memory actions the policy did not propose as candidates (p = 0) when their mean return is > 0 and
    they ground to something doable now."""

    def check(self) -> None:
        at_least("alpha", self.alpha, 0.0)
        if self.exploration is not None:
            between("exploration", self.exploration, 0.0, 1.0, "a probability")
        at_least("w_start", self.w_start, 0.0)
        at_least("w_end", self.w_end, 0.0)
        at_least("w_ramp", self.w_ramp, 0)


@dataclass
class JitRLPaperConfig(Checked):
    """JitRL with the reference code's decision rule (configs/agent/jitrl_paper.yaml)."""

    name: str = "jitrl_paper"
    beta: float = 1.0
    """Kept for sweeps that vary it across agents; the paper rule does not use β (its weight is w)."""
    k: int = 10
    gamma: float = 0.5
    threshold: float = -1.0
    """Cosine floor of the embedding recall (the lexical re-rank sets the real threshold)."""
    lexical: LexicalConfig | None = field(default_factory=LexicalConfig)
    paper: PaperRules = field(default_factory=PaperRules)

    def check(self) -> None:
        name("name", self.name)
        check_beta(self.beta)
        at_least("k", self.k, 1)
        between("gamma", self.gamma, 0.0, 1.0)
        between("threshold", self.threshold, -1.0, 1.0, "a cosine similarity")

    def build(self, ctx: BuildContext) -> JitRLPaperAgent:
        memory, embedder = ctx.memories.open(self.name, self.gamma)
        recall = EpisodeRecall(memory, embedder, ctx.run_id, ctx.config_hash)
        return JitRLPaperAgent(self, ctx.policy, recall)


class JitRLPaperAgent(RecallingAgent):
    def __init__(self, cfg: JitRLPaperConfig, policy: Policy, recall: EpisodeRecall) -> None:
        super().__init__(cfg.name, recall)
        self.cfg = cfg
        self.policy = policy

    def act(self, ctx: EpisodeContext, view: StepView) -> Decision:
        cfg, rules = self.cfg, self.cfg.paper
        rendered = view.layout.render(view, ctx.history, self.policy.window)
        scored = self.policy.score(rendered.prompt, view.actions)
        embedding, neighbours = self.recall.neighbours(ctx, view, cfg.k, cfg.threshold, cfg.lexical)
        lam = rules.exploration if rules.exploration is not None else adaptive_exploration(neighbours)
        bonus_rng = random.Random(int(ctx.rng.integers(2**63)))
        grounded: dict[str, Candidate] = {}
        dropped: list[str] = []

        def doable(key: str) -> bool:  # memory actions must name something this step offers (web) or accepts
            found = view.ground(key)
            if found is not None and found.action not in view.actions:
                grounded[key] = found
            elif found is None:
                dropped.append(key)
            return key in grounded

        adv = paper_advantage(
            view.keys,
            neighbours,
            exploration=lam,
            rng=bonus_rng,
            alpha=rules.alpha,
            add_memory_actions=rules.add_memory_actions,
            groundable=doable,
        )
        added = [grounded[key] for key in adv.keys[len(view.keys) :]]
        candidates = [*view.candidates, *added]
        base = np.concatenate([softmax(scored.z), np.zeros(len(added))])  # memory actions join with p = 0
        w = paper_weight(self.recall.episodes_done.get(ctx.task, 0), rules.w_start, rules.w_end, rules.w_ramp)
        scores = paper_scores(base, adv.values, w)  # p + w·Ã: probabilities, not logits
        index = int(np.argmax(scores))
        chosen = candidates[index]
        self.recall.note(ctx, embedding, view, chosen.action, chosen.key)
        return Decision(
            action=chosen.action,
            index=index,
            candidates=[c.action for c in candidates],
            z=[*(float(v) for v in scored.z), *(None for _ in added)],  # no policy logit for memory actions
            advantage=adv.values.tolist(),
            z_prime=scores.tolist(),
            probs=softmax(scores, 0).tolist(),
            neighbours=traced(neighbours),
            notes={
                "v": adv.v,
                "lambda": lam,
                "w": w,
                "memory_actions": [c.key for c in added],
                "memory_actions_dropped": dropped,  # remembered, but nothing on this page has that role and label
            },
            bias_applied=CLIENT,
            usage=scored.usage,
            prompt_cuts=list(rendered.cuts),
            prompt_sha1=sha1(rendered.prompt.text()),
        )
