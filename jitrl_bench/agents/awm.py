"""Agent Workflow Memory (Wang et al., 2024; zorazrw/agent-workflow-memory, online WebArena): after each successful
episode, the LLM induces reusable workflows from the successful episodes so far (within a site, or a task), and the
latest induced workflows are appended to the system text of every later episode. Success is the env's own signal or
an LLM judge (`success: judge`, the method's web protocol). One induction call per success, plus one judge call per
episode when judging (docs/baselines.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

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
from jitrl_bench.checks import Checked, at_least, one_of
from jitrl_bench.contract import BuildContext, EpisodeContext, FinishedEpisode, Generator, Prompt, StepView, Usage
from jitrl_bench.memory.notebook import Notebook

SUCCESS, WORKFLOW = "success", "workflow"
SYSTEM = (
    "Given a list of solved tasks and the actions that solved them, extract the common workflows: reusable "
    "routines of at least two steps. Write each as 'Workflow N: <title>' followed by its steps, one per line, each a "
    "short reason then the action. Replace task-specific values with named variables such as {item}. Reply with "
    "the workflows only."
)


@dataclass
class AWMConfig(InContextConfig, SuccessConfig, Checked):
    name: str = "awm"
    scope: str = "site"
    """Whose successes a workflow is induced from and shown to: site (the page's host; a text game is its own
    site), task, or all."""
    examples: int = 4
    """Successful episodes the induction reads (the latest; one per task first, as the method takes one per
    template)."""

    def check(self) -> None:
        InContextConfig.check(self)
        self.check_success()
        one_of("scope", self.scope, ("site", "task", "all"))
        at_least("examples", self.examples, 1)

    def build(self, ctx: BuildContext) -> InContextAgent:
        generator = require_generator(ctx.policy, self.name)
        learner = AWM(self, ctx.memories.notebook(self.name), ctx.memories.frozen, generator)
        return self.agent(ctx, learner)


def scope_of(scope: str, task: str, url: str) -> str:
    if scope == "all":
        return "*"
    if scope == "site" and url:
        return urlsplit(url).netloc or task
    return task


class AWM(NotebookLearner):
    def __init__(self, cfg: AWMConfig, notebook: Notebook, frozen: bool, generator: Generator) -> None:
        super().__init__(cfg.name, notebook, frozen, within_task=cfg.scope == "task")
        self.cfg = cfg
        self.generator = generator
        self.rule = SuccessRule(cfg.success, generator, cfg.max_new_tokens)
        self._scopes: dict[str, str] = {}

    def guidance(self, ctx: EpisodeContext, view: StepView) -> Guidance:
        scope = scope_of(self.cfg.scope, ctx.task, view.url)
        self._scopes[ctx.uid] = scope
        workflows = self.notebook.notes(WORKFLOW, scope=scope)
        if not workflows:
            return Guidance()
        latest = workflows[-1]  # each induction rewrites the scope's workflows (the method overwrites its file)
        return Guidance(system="Useful workflows from earlier successes:\n" + latest.text, sources=(latest.uid,))

    def forget(self, ctx: EpisodeContext) -> None:
        super().forget(ctx)
        self._scopes.pop(ctx.uid, None)

    def learn(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: list[float]) -> Usage:
        assert self.rule is not None
        scope = self._scopes.get(ctx.uid, ctx.task)
        verdict = self.rule(episode, rewards)
        if not verdict.success:
            return verdict.usage
        self.notebook.add(episode_note(SUCCESS, ctx, scope, transcript(episode, rewards), verdict, sum(rewards)))
        solved = self.notebook.notes(SUCCESS, scope=scope)
        firsts = list({n.task: n for n in reversed(solved)}.values())  # the latest success of each task first
        shown = (firsts + [n for n in reversed(solved) if n not in firsts])[: self.cfg.examples]
        user = "\n\n".join(f"Solved task {i + 1}:\n{n.text}" for i, n in enumerate(shown))
        reply = self.generator.generate(Prompt.chat(SYSTEM, user + "\n\nWorkflows:"), self.cfg.max_new_tokens)
        text = reply.text.strip()
        if text:
            self.notebook.add(episode_note(WORKFLOW, ctx, scope, text, verdict, sum(rewards)))
        return verdict.usage + reply.usage
