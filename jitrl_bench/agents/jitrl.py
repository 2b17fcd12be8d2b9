"""JitRL: a frozen policy improved at test time by a memory of past steps and their returns.

    one decision                                         end of an episode
    z   = log π_θ(a|s) over the candidates               G_t = Σ_u γ^u r_{t+u}   (applied when memory is read)
    N   = neighbours of s in memory                      memory ← {(s_t, a_t, r_t..r_T)} for every step t
    Â   = Q̂(s,a) − V̂(s) from the neighbours' returns
    z'  = z + Â/β ;  a ~ softmax(z'/T)  (argmax at T = 0)

No gradient update anywhere. The environment never appears here: states arrive as named text fields. With a policy
in choice mode, z' = z + Â/β is formed inside the LLM engine, which samples a ~ π* there (see `decide`).
The authors' reference rules are a separate agent, `agents/jitrl_paper.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from jitrl_bench.agents.base import candidates_of, decide, decision
from jitrl_bench.agents.inputs import Inputs
from jitrl_bench.agents.learning import LearningAgent
from jitrl_bench.agents.propose import ProposalConfig
from jitrl_bench.agents.recall import EpisodeRecall, RecallSettings, Recollection, traced
from jitrl_bench.agents.summary import SummaryConfig
from jitrl_bench.checks import BadValue, Checked, at_least, between, name
from jitrl_bench.contract import BuildContext, EpisodeContext, Policy, StepView
from jitrl_bench.jitrl.advantage import clean_advantage
from jitrl_bench.jitrl.retrieval import LexicalConfig
from jitrl_bench.jitrl.update import softmax
from jitrl_bench.records import Decision


@dataclass
class JitRLConfig(Checked):
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
    bonus: float = 0.0
    """Count-based optimism: Â += bonus / sqrt(1 + n_a), n_a = neighbours that took a."""
    lexical: LexicalConfig | None = None
    """The paper's lexical re-rank of the top-`recall` embedding neighbours (None: plain cosine top-k)."""
    propose: ProposalConfig = field(default_factory=ProposalConfig)
    """Candidates: the env's list (z = log π_θ) or the LLM's proposals (z = log p of their base scores)."""
    summary: SummaryConfig = field(default_factory=SummaryConfig)
    """An LLM-written summary of the episode as the state field `summary` (the paper's Jericho state)."""

    def check(self) -> None:
        name("name", self.name)
        check_beta(self.beta)
        at_least("k", self.k, 1)
        between("gamma", self.gamma, 0.0, 1.0)
        between("threshold", self.threshold, -1.0, 1.0, "a cosine similarity")
        at_least("bonus", self.bonus, 0.0)

    def build(self, ctx: BuildContext) -> JitRLAgent:
        memory, embedder = ctx.memories.open(self.name, self.gamma)
        recall = EpisodeRecall(self.name, memory, embedder, RecallSettings(self.k, self.threshold, self.lexical), ctx)
        return JitRLAgent(self, ctx.policy, ctx.temperature, recall, Inputs(ctx.policy, self.propose, self.summary))


def check_beta(beta: float) -> None:
    if math.isnan(beta) or beta <= 0:
        raise BadValue("beta", beta, "must be > 0 (small trusts memory more; inf is the frozen policy)")


class JitRLAgent(LearningAgent[Recollection]):
    def __init__(
        self, cfg: JitRLConfig, policy: Policy, temperature: float, recall: EpisodeRecall, inputs: Inputs
    ) -> None:
        super().__init__(cfg.name, recall, inputs)
        self.recall = recall
        self.cfg = cfg
        self.policy = policy
        self.temperature = temperature

    def act(self, ctx: EpisodeContext, view: StepView) -> Decision:
        cfg = self.cfg
        inputs = self.inputs(ctx, view)  # the view (with its summary), the prompt, the candidates
        candidates = candidates_of(inputs)
        # 1. neighbours N(s) of the current state in memory (same task partition)
        recalled = self.recall.read(ctx, inputs.view)
        neighbours = recalled.neighbours
        # 2. Â = Q̂ − V̂ over the candidates' keys (web: role[label], not ids)
        adv = clean_advantage([c.key for c in candidates], neighbours, cfg.bonus)
        # 3-4. z' = z + Â/β, a ~ softmax(z'/T): inside the LLM engine when the policy can, else here
        acted = decide(self.policy, inputs, adv.values, cfg.beta, self.temperature, ctx.rng)
        chosen = candidates[acted.index]
        self.recall.note(ctx, recalled.embedding, inputs.view, chosen.action, chosen.key)
        probs = softmax(acted.z_prime, self.temperature)
        return decision(inputs, candidates, acted.index, acted.z.tolist(), acted.z_prime, probs, adv.values,
                        acting=acted.usage, bias_applied=acted.bias_applied, neighbours=traced(neighbours),
                        notes={"v": adv.v})  # fmt: skip
