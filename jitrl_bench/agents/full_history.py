"""Full history: the task's earlier episodes in context, the oldest cut first to a token budget.

Long-context in-context learning, which 2026 studies of agent memory find "highly competitive" with memory systems
(EvoMemBench, CL-Bench; docs/baselines.md §4). Each finished episode is kept as a transcript (actions, rewards, what
followed, the outcome); an episode's prompt shows as many of the latest ones as fit. No extra LLM call.
"""

from __future__ import annotations

from dataclasses import dataclass

from jitrl_bench.agents.guidance import Guidance, keep_last
from jitrl_bench.agents.in_context import InContextAgent, InContextConfig, NotebookLearner, episode_note, transcript
from jitrl_bench.checks import Checked
from jitrl_bench.contract import BuildContext, ContextWindow, EpisodeContext, FinishedEpisode, StepView, Usage
from jitrl_bench.memory.notebook import Notebook

KIND = "episode"


@dataclass
class FullHistoryConfig(InContextConfig, Checked):
    name: str = "full_history"
    max_tokens: int = 600

    def build(self, ctx: BuildContext) -> InContextAgent:
        learner = FullHistory(self, ctx.memories.notebook(self.name), ctx.memories.frozen, ctx.policy.window)
        return self.agent(ctx, learner)


class FullHistory(NotebookLearner):
    def __init__(self, cfg: FullHistoryConfig, notebook: Notebook, frozen: bool, window: ContextWindow) -> None:
        super().__init__(cfg.name, notebook, frozen, within_task=True)  # its own task's episodes
        self.cfg = cfg
        self.window = window

    def guidance(self, ctx: EpisodeContext, view: StepView) -> Guidance:
        earlier = self.notebook.notes(KIND, scope=ctx.task)
        if not earlier:
            return Guidance()
        lines = ["Your earlier attempts at this task, oldest first:"]
        for note in earlier:
            lines.append(f"Attempt {note.episode + 1}:")
            lines.extend(note.text.splitlines())
        lines.append("Use them to play better now.")
        kept = keep_last(lines[1:], self.window, self.cfg.max_tokens)  # the oldest lines go first
        return Guidance(context="\n".join([lines[0], *kept]), sources=tuple(n.uid for n in earlier))

    def learn(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: list[float]) -> Usage:
        self.notebook.add(episode_note(KIND, ctx, ctx.task, transcript(episode, rewards), ret=sum(rewards)))
        return Usage()
