"""What an agent decides from, the same way for every agent: the step's view (with the LLM summary when one is
kept), the prompt the env's layout renders for the policy's window, and the candidates: the env's list, or the LLM's
proposals when the agent is configured for them (with the reason when a proposal failed and the env's list stood in).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from jitrl_bench.agents.guidance import NO_GUIDANCE, Guidance, render_guided
from jitrl_bench.agents.propose import NoProposal, Proposal, ProposalConfig, propose
from jitrl_bench.agents.summary import Summarizer, SummaryConfig
from jitrl_bench.contract import EpisodeContext, Ledger, Policy, RenderedPrompt, StepView


@dataclass(frozen=True)
class StepInputs:
    view: StepView
    """The env's view, plus the `summary` state field when one is kept."""
    rendered: RenderedPrompt
    proposal: Proposal | None = None
    """The LLM's proposals; None: act on the env's candidates."""
    fallback: str = ""
    """Why proposals were asked for and not used ("" when they were, or were not asked for)."""
    ledger: Ledger = field(default_factory=Ledger)

    def notes(self) -> dict[str, object]:
        """What the decision trace keeps of them."""
        notes: dict[str, object] = {}
        if self.view.state.get("summary"):
            notes["summary"] = self.view.state["summary"]
        if self.proposal is not None:
            notes["proposed"] = [c.action for c in self.proposal.candidates]
            notes["reasons"] = list(self.proposal.reasons)
            notes["p"] = [round(float(v), 4) for v in self.proposal.p]
            notes["best"] = self.proposal.best
            notes["dropped"] = list(self.proposal.dropped)
            notes["repaired"] = self.proposal.repaired
            if self.proposal.replaced:
                notes["replaced_surrogates"] = self.proposal.replaced
        return notes


class Inputs:
    """Builds each step's inputs for one agent (its proposal and summary settings, its policy)."""

    def __init__(self, policy: Policy, propose_cfg: ProposalConfig, summary_cfg: SummaryConfig) -> None:
        self.policy = policy
        self.propose_cfg = propose_cfg
        self.summarizer = Summarizer(summary_cfg, policy) if summary_cfg.mode == "llm" else None

    def __call__(self, ctx: EpisodeContext, view: StepView, guidance: Guidance = NO_GUIDANCE) -> StepInputs:
        """This step's inputs; `guidance` is what an in-context method puts in the prompt (nothing for the others)."""
        ledger = Ledger()
        if self.summarizer is not None:
            summary = self.summarizer.summary(ctx, view.observation, ledger)
            view = dataclasses.replace(view, state={**view.state, "summary": summary or "no progress yet"})
        rendered = render_guided(view, ctx.history, self.policy.window, guidance)
        if self.propose_cfg.mode == "none":
            return StepInputs(view, rendered, ledger=ledger)
        proposed = propose(self.propose_cfg, self.policy, rendered.prompt, view)
        ledger.merge(proposed.usage.by_purpose)
        if isinstance(proposed, NoProposal):
            return StepInputs(view, rendered, None, proposed.reason, ledger)
        return StepInputs(view, rendered, proposed, "", ledger)

    def forget(self, ctx: EpisodeContext) -> None:
        if self.summarizer is not None:
            self.summarizer.forget(ctx)


def log_p(p: np.ndarray) -> np.ndarray:
    """Base scores p as logits z = log p (a confidence of 0 becomes a very unlikely action, not an impossible one)."""
    z: np.ndarray = np.log(np.maximum(np.asarray(p, dtype=np.float64), 1e-4))
    return z
