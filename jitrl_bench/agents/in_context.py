"""The in-context baselines' agent: the frozen policy's decision (β = ∞, the same candidates and draw as every other
agent) from a prompt that holds what its method learned. Each method is a `Learner[Guidance]` in its own module
(`full_history`, `reflexion`, `awm`, `reasoning_bank`, `prompt_update`); this module holds what they share: their
common settings, the agent, an episode as a transcript, and when an episode counts as a success.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from jitrl_bench.agents.base import candidates_of, decide, decision
from jitrl_bench.agents.guidance import Guidance
from jitrl_bench.agents.inputs import Inputs
from jitrl_bench.agents.learning import LearningAgent
from jitrl_bench.agents.propose import ProposalConfig
from jitrl_bench.agents.summary import SummaryConfig
from jitrl_bench.checks import at_least, name, one_of
from jitrl_bench.contract import (
    BuildContext,
    Candidate,
    EpisodeContext,
    FinishedEpisode,
    Generator,
    Learner,
    Policy,
    Prompt,
    StepView,
    Usage,
)  # fmt: skip
from jitrl_bench.errors import UserError
from jitrl_bench.jitrl.update import softmax
from jitrl_bench.memory.notebook import Note, Notebook
from jitrl_bench.records import Decision, EpisodeRecord
from jitrl_bench.replies import json_object
from jitrl_bench.text import clip

SUCCESS_RULES = ("won", "improved", "judge")


@dataclass
class InContextConfig:
    """What every in-context baseline shares (set `propose` and `summary` as for the agents it is compared with)."""

    name: str = ""
    max_tokens: int = 512
    """Tokens of the prompt its guidance may take (cut oldest first; never more than half the window)."""
    max_new_tokens: int = 256
    """Length of each learning call's reply (reflection, induction, lessons, judgement)."""
    propose: ProposalConfig = field(default_factory=ProposalConfig)
    summary: SummaryConfig = field(default_factory=SummaryConfig)

    def check(self) -> None:
        name("name", self.name)
        at_least("max_tokens", self.max_tokens, 32)
        at_least("max_new_tokens", self.max_new_tokens, 16)

    def agent(self, ctx: BuildContext, learner: GuidingLearner) -> InContextAgent:
        """The agent around a method's learner, deciding as the frozen policy does."""
        inputs = Inputs(ctx.policy, self.propose, self.summary)
        return InContextAgent(self.name, learner, ctx.policy, ctx.temperature, inputs)


@dataclass
class SuccessConfig:
    """When an episode counts as a success (what Reflexion reflects on, AWM induces from, ReasoningBank files)."""

    success: str = "improved"
    """won: the env's own win signal; improved: won, or a score > 0 at least the task's best so far (text games
    rarely end in a win); judge: an LLM judge reads the episode (one call; the methods' web protocol)."""

    def check_success(self) -> None:
        one_of("success", self.success, SUCCESS_RULES)


class GuidingLearner(Learner[Guidance], Protocol):
    def taken(self, ctx: EpisodeContext, view: StepView, chosen: Candidate) -> None:
        """The action the agent took at this step (Prompt Update writes it to memory with its return)."""
        ...


class InContextAgent(LearningAgent[Guidance]):
    def __init__(self, name: str, learner: GuidingLearner, policy: Policy, temperature: float, inputs: Inputs) -> None:
        super().__init__(name, learner, inputs)
        self.guiding = learner
        self.policy = policy
        self.temperature = temperature

    def act(self, ctx: EpisodeContext, view: StepView) -> Decision:
        guidance = self.guiding.read(ctx, view)  # what the method learned, for this step's prompt
        inputs = self.inputs(ctx, view, guidance)
        candidates = candidates_of(inputs)
        zeros = np.zeros(len(candidates))
        acted = decide(self.policy, inputs, zeros, math.inf, self.temperature, ctx.rng)  # the LLM's own choice
        self.guiding.taken(ctx, inputs.view, candidates[acted.index])
        notes: dict[str, Any] = {"guidance_sources": list(guidance.sources)}
        if guidance.system:
            notes["guidance_system"] = guidance.system
        if guidance.context:
            notes["guidance_context"] = guidance.context
        probs = softmax(acted.z_prime, self.temperature)
        return decision(inputs, candidates, acted.index, acted.z.tolist(), acted.z_prime, probs, zeros,
                        acting=acted.usage, bias_applied=acted.bias_applied, notes=notes,
                        neighbours=list(guidance.neighbours))  # fmt: skip


def require_generator(policy: Policy, agent: str) -> Generator:
    generator = policy.generator()
    if generator is None:
        raise UserError(f"agent {agent!r} writes text with the policy, and policy {policy.name!r} cannot: use an LLM")
    return generator


def transcript(episode: FinishedEpisode, rewards: list[float] | tuple[float, ...], chars: int = 160) -> str:
    """An episode in a few lines: the goal, each action with its reward and what followed, the outcome."""
    lines = [f"Goal: {episode.goal}"] if episode.goal else []
    observations = [s.observation for s in episode.steps[1:]] + [episode.final_observation]
    for t, (step, r, after) in enumerate(zip(episode.steps, rewards, observations, strict=True)):
        lines.append(f"{t + 1}. > {step.action} (reward {r:g}): {clip(after, chars)}")
    lines.append(outcome(episode))
    return "\n".join(lines)


def outcome(episode: FinishedEpisode) -> str:
    of = f"/{episode.max_score:g}" if episode.max_score > 0 else ""
    return f"Outcome: score {episode.score:g}{of}, {'won' if episode.won else 'not won'}."


JUDGE_SYSTEM = (
    "You judge whether an agent accomplished its task. Read the task, the actions it took, what followed each, and "
    "the final state. Reply with JSON only: the status (success or failure) and a one-sentence reason."
)
JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["success", "failure"]}, "reason": {"type": "string"}},
    "required": ["status", "reason"],
}


@dataclass(frozen=True)
class Verdict:
    success: bool
    reason: str
    usage: Usage


class SuccessRule:
    """Whether a finished episode succeeded, by the configured rule; keeps each task's best score for `improved`."""

    def __init__(self, rule: str, generator: Generator, max_new_tokens: int) -> None:
        self.rule = rule
        self.generator = generator
        self.max_new_tokens = max_new_tokens
        self.best: dict[str, float] = {}

    def __call__(self, episode: FinishedEpisode, rewards: list[float]) -> Verdict:
        best = self.best.get(episode.task, -math.inf)
        self.seen(episode.task, episode.score)
        if self.rule == "won":
            return Verdict(episode.won, "the env's win signal", Usage())
        if self.rule == "improved":
            improved = episode.won or (episode.score > 0 and episode.score >= best)
            return Verdict(improved, "won, or a score > 0 at least the best so far", Usage())
        prompt = Prompt.chat(JUDGE_SYSTEM, transcript(episode, rewards))
        reply = self.generator.generate(prompt, self.max_new_tokens, JUDGE_SCHEMA)
        data, problem = json_object(reply.text)
        if data is None or data.get("status") not in ("success", "failure"):
            return Verdict(False, f"unreadable judgement ({problem or 'no status'}): counted as a failure", reply.usage)
        return Verdict(data["status"] == "success", str(data.get("reason", ""))[:300], reply.usage)

    def seen(self, task: str, score: float) -> None:
        self.best[task] = max(self.best.get(task, -math.inf), score)


class NotebookLearner:
    """What the per-episode methods share: the guidance is chosen at an episode's first step and kept for all of
    it (as the methods place it once per episode); notes are written after the episode; a frozen one only reads."""

    def __init__(self, name: str, notebook: Notebook, frozen: bool, within_task: bool = False) -> None:
        self.name = name
        self.notebook = notebook
        self.frozen = frozen
        self.within_task = within_task
        """Notes are read only by the task that wrote them (False, the safe default, when they may be shared)."""
        self.rule: SuccessRule | None = None
        self._guidance: dict[str, Guidance] = {}
        self._lock = threading.Lock()

    def read(self, ctx: EpisodeContext, view: StepView) -> Guidance:
        with self._lock:
            known = self._guidance.get(ctx.uid)
        if known is None:
            known = self.guidance(ctx, view)
            with self._lock:
                self._guidance[ctx.uid] = known
        return known

    def guidance(self, ctx: EpisodeContext, view: StepView) -> Guidance:
        """What the method puts in this episode's prompt (at its first step)."""
        raise NotImplementedError

    def taken(self, ctx: EpisodeContext, view: StepView, chosen: Candidate) -> None:
        return None

    def write(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: Sequence[float]) -> Usage:
        try:
            return self.learn(ctx, episode, list(rewards))
        finally:
            self.forget(ctx)

    def learn(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: list[float]) -> Usage:
        """Write what the finished episode taught; returns what its LLM calls cost."""
        raise NotImplementedError

    def forget(self, ctx: EpisodeContext) -> None:
        with self._lock:
            self._guidance.pop(ctx.uid, None)

    def restore(self, finished: Sequence[EpisodeRecord]) -> None:
        if self.rule is not None:  # the best score per task, for the `improved` rule
            for record in finished:
                if record.agent == self.name and record.episode >= 0 and record.status == "ok":
                    self.rule.seen(record.task, record.score)


def episode_note(kind: str, ctx: EpisodeContext, scope: str, text: str, verdict: Verdict | None = None,
                 ret: float = 0.0, query: str = "") -> Note:  # fmt: skip
    success = verdict.success if verdict is not None else False
    return Note(kind, ctx.task, scope, ctx.episode, ctx.uid, text, success, ret, query)
