"""Reflexion (Shinn et al., 2023; noahshinn/reflexion, alfworld_runs): after each failed episode the LLM diagnoses
what went wrong and writes a short new plan; the last 3 reflections of the task are shown, as "Trial i:" entries,
before the task in every later episode. One extra LLM call per failed episode (docs/baselines.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass

from jitrl_bench.agents.guidance import Guidance
from jitrl_bench.agents.in_context import (
    InContextAgent,
    InContextConfig,
    NotebookLearner,
    SuccessConfig,
    SuccessRule,
    episode_note,
    require_generator,
    transcript,
)  # fmt: skip
from jitrl_bench.checks import Checked, at_least
from jitrl_bench.contract import BuildContext, EpisodeContext, FinishedEpisode, Generator, Prompt, StepView, Usage
from jitrl_bench.memory.notebook import Notebook

KIND = "reflection"
SYSTEM = (
    "You will be given the record of a past attempt at a task, in which you did not succeed. Do not summarize the "
    "environment. Diagnose the possible reason for the failure and devise a concise, high-level new plan that "
    "names the specific actions you should have taken. Reply with the plan only, in a few sentences."
)


@dataclass
class ReflexionConfig(InContextConfig, SuccessConfig, Checked):
    name: str = "reflexion"
    window: int = 3
    """Reflections shown: the task's latest ones (the method keeps 3)."""

    def check(self) -> None:
        InContextConfig.check(self)
        self.check_success()
        at_least("window", self.window, 1)

    def build(self, ctx: BuildContext) -> InContextAgent:
        generator = require_generator(ctx.policy, self.name)
        learner = Reflexion(self, ctx.memories.notebook(self.name), ctx.memories.frozen, generator)
        return self.agent(ctx, learner)


class Reflexion(NotebookLearner):
    def __init__(self, cfg: ReflexionConfig, notebook: Notebook, frozen: bool, generator: Generator) -> None:
        super().__init__(cfg.name, notebook, frozen, within_task=True)  # reflections are per task
        self.cfg = cfg
        self.generator = generator
        self.rule = SuccessRule(cfg.success, generator, cfg.max_new_tokens)

    def guidance(self, ctx: EpisodeContext, view: StepView) -> Guidance:
        shown = self.notebook.notes(KIND, scope=ctx.task)[-self.cfg.window :]
        if not shown:
            return Guidance()
        lines = ["Your reflections from earlier attempts at this task:"]
        lines += [f"Trial {note.episode + 1}: {' '.join(note.text.split())}" for note in shown]
        return Guidance(context="\n".join(lines), sources=tuple(n.uid for n in shown))

    def learn(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: list[float]) -> Usage:
        assert self.rule is not None
        verdict = self.rule(episode, rewards)
        if verdict.success:
            return verdict.usage
        earlier = self.notebook.notes(KIND, scope=ctx.task)[-self.cfg.window :]
        plans = [f"Plan from trial {n.episode + 1}: {n.text}" for n in earlier]
        user = "\n\n".join([transcript(episode, rewards), *plans, "New plan:"])
        reply = self.generator.generate(Prompt.chat(SYSTEM, user), self.cfg.max_new_tokens)
        text = reply.text.strip()
        if text:
            self.notebook.add(episode_note(KIND, ctx, ctx.task, text, verdict, ret=sum(rewards)))
        return verdict.usage + reply.usage
