"""ReasoningBank (Ouyang et al., 2025; google-research/reasoning-bank): after each episode an LLM judge (or the env)
says whether it succeeded, and the LLM distils up to 3 memory items (title, when to use it, 1-3 sentences of
content, no task-specific strings) from the success or the failure. Before an episode, the item set whose task is
most similar to the current one (cosine of embedded goals, top 1) is placed in the system text. The current task's
own items are excluded by default (the method's self-retrieval on repeats is its known flaw). One induction call per
episode, plus one judge call when judging (docs/baselines.md §4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

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
from jitrl_bench.checks import Checked, between
from jitrl_bench.contract import BuildContext, EpisodeContext, FinishedEpisode, Generator, Prompt, StepView, Usage
from jitrl_bench.memory.embed import Embedder
from jitrl_bench.memory.notebook import Notebook
from jitrl_bench.replies import MAX_DEPTH, depth, json_object, valid_json

KIND = "lessons"
SUCCEEDED = (
    "You are given the record of an agent's episode that SUCCEEDED. Extract at most 3 reusable strategies that made "
    "it work, as memory items: a title, a one-sentence description of when to use it, and 1-3 sentences of "
    "content. Do not mention the specific task, names or values. Reply with JSON only."
)
FAILED = (
    "You are given the record of an agent's episode that FAILED. Reflect on why it failed and extract at most 3 "
    "lessons or preventive strategies, as memory items: a title, a one-sentence description of when to use it, and "
    "1-3 sentences of content. Do not mention the specific task, names or values. Reply with JSON only."
)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "title": {"type": "string", "maxLength": 80},
                    "description": {"type": "string", "maxLength": 160},
                    "content": {"type": "string", "maxLength": 320},
                },
                "required": ["title", "description", "content"],
            },
        }
    },
    "required": ["items"],
}
HEADER = "Memory items from earlier tasks. At every step, consider whether each applies before you act:"


@dataclass
class ReasoningBankConfig(InContextConfig, SuccessConfig, Checked):
    name: str = "reasoning_bank"
    success: str = "judge"
    exclude_current_task: bool = True
    """Never retrieve the current task's own items (the protocol's isolation; false reproduces the reference's
    self-retrieval on repeated tasks)."""
    min_similarity: float = -1.0
    """Cosine floor of the top-1 item set (the method has none)."""

    def check(self) -> None:
        InContextConfig.check(self)
        self.check_success()
        between("min_similarity", self.min_similarity, -1.0, 1.0, "a cosine similarity")

    def build(self, ctx: BuildContext) -> InContextAgent:
        generator = require_generator(ctx.policy, self.name)
        notebook, embedder = ctx.memories.notebook(self.name), ctx.memories.embedder()
        learner = ReasoningBank(self, notebook, ctx.memories.frozen, generator, embedder)
        return self.agent(ctx, learner)


def query_of(task: str, goal: str) -> str:
    """What items are filed and found by: the task's goal (its intent on the web), else its id."""
    return " ".join(goal.split()) or task


class ReasoningBank(NotebookLearner):
    def __init__(
        self, cfg: ReasoningBankConfig, notebook: Notebook, frozen: bool, generator: Generator, embedder: Embedder
    ) -> None:
        super().__init__(cfg.name, notebook, frozen)
        self.cfg = cfg
        self.generator = generator
        self.embedder = embedder
        self.rule = SuccessRule(cfg.success, generator, cfg.max_new_tokens)
        self._vectors: dict[str, np.ndarray] = {}

    def guidance(self, ctx: EpisodeContext, view: StepView) -> Guidance:
        bank = [n for n in self.notebook.notes(KIND) if not (self.cfg.exclude_current_task and n.task == ctx.task)]
        if not bank:
            return Guidance()
        query = self.vector(query_of(ctx.task, view.goal))
        similarity = [float(self.vector(n.query) @ query) for n in bank]
        best = int(np.argmax(similarity))
        if similarity[best] < self.cfg.min_similarity:
            return Guidance()
        chosen = bank[best]
        return Guidance(system=f"{HEADER}\n{chosen.text}", sources=(f"{chosen.uid} ({chosen.task})",))

    def vector(self, text: str) -> np.ndarray:
        if text not in self._vectors:
            self._vectors[text] = self.embedder.encode([text])[0]
        return self._vectors[text]

    def learn(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: list[float]) -> Usage:
        assert self.rule is not None
        verdict = self.rule(episode, rewards)
        prompt = Prompt.chat(SUCCEEDED if verdict.success else FAILED, transcript(episode, rewards))
        reply = self.generator.generate(prompt, self.cfg.max_new_tokens, SCHEMA)
        items = memory_items(reply.text)
        if items:
            query = query_of(ctx.task, episode.goal)
            self.notebook.add(episode_note(KIND, ctx, "*", items, verdict, sum(rewards), query))
        return verdict.usage + reply.usage


def memory_items(reply: str) -> str:
    """The reply's items as the system text shows them ("" when it holds none)."""
    data, _ = json_object(reply)
    raw = data.get("items") if data is not None else None
    items = [i for i in raw if isinstance(i, dict)][:3] if isinstance(raw, list) else complete_items(reply)[:3]
    blocks = []
    for item in items:
        title, description, content = (
            " ".join(str(item.get(k, "")).split()) for k in ("title", "description", "content")
        )
        if title or content:
            blocks.append(f"## {title}\n{description}\n{content}".strip())
    return "\n".join(blocks)


def complete_items(reply: str) -> list[dict[str, Any]]:
    """The items a reply cut by its token limit completed before the cut (each a whole JSON object)."""
    if depth(reply) > MAX_DEPTH:  # the decoder recurses: a reply this deep is one with no items
        return []
    decoder, found = json.JSONDecoder(), []
    start = reply.find("[")
    at = reply.find("{", start + 1) if start >= 0 else -1
    while at >= 0:
        try:
            item, end = decoder.raw_decode(reply, at)
        except json.JSONDecodeError:
            break
        if isinstance(item, dict):
            found.append(valid_json(item)[0])
        at = reply.find("{", end)
    return found
