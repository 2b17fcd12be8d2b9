"""JitRL as the authors' reference code decides, rule by rule (facts: docs/method.md):

    p   = π_θ(a|s) over the candidates (probabilities, not logits)
    N   = neighbours of s: embedding recall, then the lexical re-rank
    Ã   = paper_advantage(...)   mean Q̂/V̂, λ-bonus α/n for unseen candidates, memory actions added as candidates,
                                  divided by the largest positive Â
    a   = argmax_a  p(a) + w·Ã(a),  w growing 1.0 → 1.5 over 50 episodes

It is not the KL closed form (the bias goes onto probabilities), so it is always applied here, never in the engine.
Memory actions join only when they can be done now: text games take any command; on the web a remembered
`click link[X]` must ground to an element with that role and label on the current page, else it is dropped.
With proposals (`propose.mode=verbalized`, the paper's default) p is the LLM's confidence / 100, and when memory
returns nothing the LLM's own best pick is taken, as in the reference.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from jitrl_bench.agents.base import CLIENT, decision
from jitrl_bench.agents.inputs import Inputs, log_p
from jitrl_bench.agents.jitrl import check_beta
from jitrl_bench.agents.learning import LearningAgent
from jitrl_bench.agents.propose import ProposalConfig
from jitrl_bench.agents.recall import EpisodeRecall, RecallSettings, Recollection, traced
from jitrl_bench.agents.summary import SummaryConfig
from jitrl_bench.checks import Checked, at_least, between, name
from jitrl_bench.contract import BuildContext, Candidate, EpisodeContext, Policy, StepView, Usage
from jitrl_bench.jitrl.advantage import Advantage, adaptive_exploration, paper_advantage, paper_weight
from jitrl_bench.jitrl.retrieval import LexicalConfig
from jitrl_bench.jitrl.update import paper_scores, softmax
from jitrl_bench.memory.store import Neighbour
from jitrl_bench.records import Decision


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
    """Append memory actions the policy did not propose as candidates (p = 0) when they ground to something doable
    now (and, with `memory_actions_positive`, their mean return is > 0)."""
    memory_actions_positive: bool = True
    """Only memory actions with a mean return > 0 join (the reference's Jericho code; its web code adds any that
    ground on the page)."""

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
    propose: ProposalConfig = field(default_factory=ProposalConfig)
    """The paper's default is `verbalized`: the LLM proposes 3 actions with confidences, p = confidence / 100."""
    summary: SummaryConfig = field(default_factory=SummaryConfig)
    """The paper's Jericho state: an LLM-written summary (`llm`), read by the lexical re-rank."""

    def check(self) -> None:
        name("name", self.name)
        check_beta(self.beta)
        at_least("k", self.k, 1)
        between("gamma", self.gamma, 0.0, 1.0)
        between("threshold", self.threshold, -1.0, 1.0, "a cosine similarity")

    def build(self, ctx: BuildContext) -> JitRLPaperAgent:
        memory, embedder = ctx.memories.open(self.name, self.gamma)
        recall = EpisodeRecall(self.name, memory, embedder, RecallSettings(self.k, self.threshold, self.lexical), ctx)
        return JitRLPaperAgent(self, ctx.policy, recall, Inputs(ctx.policy, self.propose, self.summary))


@dataclass(frozen=True)
class PaperChoice:
    index: int
    keys: list[str]
    """The candidates' keys, then the memory actions added (p = 0)."""
    scores: np.ndarray
    """p + w·Ã per key."""
    advantage: Advantage
    w: float


def paper_choice(
    keys: Sequence[str],
    p: np.ndarray,
    best: int | None,
    neighbours: Sequence[Neighbour],
    rules: PaperRules,
    lam: float,
    rng: random.Random,
    episodes_done: int,
    groundable: Callable[[str], bool] | None = None,
) -> PaperChoice:
    """The reference's decision, given its inputs: Ã from `paper_advantage` (memory actions joining with p = 0), then
    argmax of p + w·Ã, w by the episodes done; nothing retrieved and the LLM named a best option: that option."""
    adv = paper_advantage(
        keys,
        neighbours,
        exploration=lam,
        rng=rng,
        alpha=rules.alpha,
        add_memory_actions=rules.add_memory_actions,
        positive_only=rules.memory_actions_positive,
        groundable=groundable,
    )
    base = np.concatenate([np.asarray(p, dtype=np.float64), np.zeros(len(adv.keys) - len(keys))])
    w = paper_weight(episodes_done, rules.w_start, rules.w_end, rules.w_ramp)
    scores = paper_scores(base, adv.values, w)  # p + w·Ã: probabilities, not logits
    index = best if (best is not None and not neighbours) else int(np.argmax(scores))
    return PaperChoice(index, adv.keys, scores, adv, w)


class JitRLPaperAgent(LearningAgent[Recollection]):
    def __init__(self, cfg: JitRLPaperConfig, policy: Policy, recall: EpisodeRecall, inputs: Inputs) -> None:
        super().__init__(cfg.name, recall, inputs)
        self.recall = recall
        self.cfg = cfg
        self.policy = policy

    def act(self, ctx: EpisodeContext, view: StepView) -> Decision:
        rules = self.cfg.paper
        inputs = self.inputs(ctx, view)  # the view (with its summary), the prompt, the LLM's proposals
        view = inputs.view
        # p: the proposals' confidences / 100, or π_θ over the env's candidates
        acting = Usage()
        if inputs.proposal is not None:
            proposed, p, best = inputs.proposal.candidates, inputs.proposal.p, inputs.proposal.best
            z = log_p(p)
        else:
            scored = self.policy.score(inputs.rendered.prompt, view.actions)
            proposed, p, best, z, acting = view.candidates, softmax(scored.z), None, scored.z, scored.usage
        keys = [c.key for c in proposed]
        recalled = self.recall.read(ctx, view)
        embedding, neighbours = recalled.embedding, recalled.neighbours
        lam = rules.exploration if rules.exploration is not None else adaptive_exploration(neighbours)
        grounded: dict[str, Candidate] = {}
        dropped: list[str] = []

        def doable(key: str) -> bool:  # memory actions must name something this step offers (web) or accepts
            found = view.ground(key)
            if found is not None and found.key not in keys:
                grounded[key] = found
            elif found is None:
                dropped.append(key)
            return key in grounded

        bonus_rng = random.Random(int(ctx.rng.integers(2**63)))
        episodes_done = self.recall.episodes_done.get(ctx.task, 0)
        chosen = paper_choice(keys, p, best, neighbours, rules, lam, bonus_rng, episodes_done, doable)
        added = [grounded[key] for key in chosen.keys[len(keys) :]]
        candidates = [*proposed, *added]
        action = candidates[chosen.index]
        self.recall.note(ctx, embedding, view, action.action, action.key)
        notes = {
            "v": chosen.advantage.v,
            "lambda": lam,
            "w": chosen.w,
            "memory_actions": [c.key for c in added],
            "memory_actions_dropped": dropped,  # remembered, but nothing on this page has that role and label
        }
        z_all = [*(float(v) for v in z), *(None for _ in added)]  # no policy logit for memory actions
        return decision(inputs, candidates, chosen.index, z_all, chosen.scores, softmax(chosen.scores, 0),
                        chosen.advantage.values, acting=acting, bias_applied=CLIENT, neighbours=traced(neighbours),
                        notes=notes)  # fmt: skip
