"""Prompt Update: the paper's channel ablation (JitRL Table 8). The same memory, query, k and threshold as JitRL
retrieve the same neighbours of the current state, which are written into the prompt (state, action, return,
similarity) instead of shifting the logits; the LLM's own choice is taken, with no advantage. Its memory is written
exactly as JitRL's. No extra LLM call (docs/baselines.md §1: the paper's prompt text is not released; this one is ours).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jitrl_bench.agents.guidance import Guidance
from jitrl_bench.agents.in_context import InContextAgent, InContextConfig
from jitrl_bench.agents.recall import EpisodeRecall, RecallSettings, state_text, traced
from jitrl_bench.checks import Checked, at_least, between
from jitrl_bench.contract import BuildContext, Candidate, EpisodeContext, FinishedEpisode, StepView, Usage
from jitrl_bench.jitrl.retrieval import LexicalConfig
from jitrl_bench.records import EpisodeRecord
from jitrl_bench.text import clip

HEADER = "Similar past situations from your memory (what was done, and the return that followed; higher is better):"


@dataclass
class PromptUpdateConfig(InContextConfig, Checked):
    name: str = "prompt_update"
    k: int = 10
    """Neighbours retrieved (JitRL's k: set both alike for the ablation)."""
    threshold: float = 0.8
    gamma: float = 0.9
    lexical: LexicalConfig | None = None
    shown: int = 5
    """Neighbours written into the prompt, most similar first."""

    def check(self) -> None:
        InContextConfig.check(self)
        at_least("k", self.k, 1)
        between("threshold", self.threshold, -1.0, 1.0, "a cosine similarity")
        between("gamma", self.gamma, 0.0, 1.0)
        at_least("shown", self.shown, 1)

    def build(self, ctx: BuildContext) -> InContextAgent:
        memory, embedder = ctx.memories.open(self.name, self.gamma)
        recall = EpisodeRecall(self.name, memory, embedder, RecallSettings(self.k, self.threshold, self.lexical), ctx)
        learner = PromptUpdate(recall, self.shown)
        return self.agent(ctx, learner)


class PromptUpdate:
    """JitRL's memory, read into the prompt: the neighbours of each step, and each step written with its return."""

    def __init__(self, recall: EpisodeRecall, shown: int) -> None:
        self.recall = recall
        self.shown = shown
        self.frozen = recall.frozen
        self.within_task = recall.within_task
        self._embeddings: dict[tuple[str, int], np.ndarray] = {}

    def read(self, ctx: EpisodeContext, view: StepView) -> Guidance:
        recalled = self.recall.read(ctx, view)
        self._embeddings[(ctx.uid, len(ctx.history))] = recalled.embedding
        shown = sorted(recalled.neighbours, key=lambda nb: -nb.similarity)[: self.shown]
        if not shown:
            return Guidance()
        lines = [HEADER]
        for nb in shown:
            state = clip(state_text(self.recall.memory.fields(nb.id)), 200)
            lines.append(f"- {state} -> {nb.action_key} (return {nb.ret:.2f}, similarity {nb.similarity:.2f})")
        return Guidance(context="\n".join(lines), neighbours=tuple(traced(shown)))

    def taken(self, ctx: EpisodeContext, view: StepView, chosen: Candidate) -> None:
        embedding = self._embeddings.pop((ctx.uid, len(ctx.history)))
        self.recall.note(ctx, embedding, view, chosen.action, chosen.key)

    def write(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: Sequence[float]) -> Usage:
        return self.recall.write(ctx, episode, rewards)

    def forget(self, ctx: EpisodeContext) -> None:
        self.recall.forget(ctx)

    def restore(self, finished: Sequence[EpisodeRecord]) -> None:
        self.recall.restore(finished)
