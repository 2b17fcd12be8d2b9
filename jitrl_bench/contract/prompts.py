"""Prompts and what they cost: the messages a policy reads, how a prompt is cut to its window, the usage ledger."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from jitrl_bench.records import PromptCut, Usage

# ---- usage by purpose ------------------------------------------------------------------------------------------------


ACTING, PROPOSING, SUMMARIZING, EVALUATING, LEARNING = "acting", "proposing", "summarizing", "evaluating", "learning"
"""What an LLM call was for: scoring or choosing among candidates, proposing candidates, writing a state summary,
scoring a finished episode's steps, an agent's own learning after an episode (e.g. a reflection)."""


@dataclass
class Ledger:
    """LLM usage by purpose, summed per decision and per episode."""

    by_purpose: dict[str, Usage] = field(default_factory=dict)

    def charge(self, purpose: str, usage: Usage) -> None:
        if usage.calls or usage.tokens:
            self.by_purpose[purpose] = self.by_purpose.get(purpose, Usage()) + usage

    def merge(self, other: Mapping[str, Usage]) -> None:
        for purpose, usage in other.items():
            self.charge(purpose, usage)

    @property
    def total(self) -> Usage:
        return sum(self.by_purpose.values(), Usage())


# ---- prompts ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Prompt:
    """A chat prompt. A candidate action is scored as the assistant's reply to it."""

    messages: tuple[Message, ...]

    @classmethod
    def chat(cls, system: str, user: str) -> Prompt:
        return cls((Message("system", system), Message("user", user)))

    def text(self) -> str:
        return "\n".join(m.content for m in self.messages)


class ContextWindow(Protocol):
    """The policy's context as a prompt layout needs it: how many tokens a prompt may take, and how to count them."""

    @property
    def max_prompt_tokens(self) -> int: ...

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, as the policy's tokenizer splits it (an estimate for policies without one)."""
        ...

    def prompt_tokens(self, prompt: Prompt) -> int:
        """Tokens of the whole prompt as the policy sends it (chat template included)."""
        ...


@dataclass(frozen=True)
class RenderedPrompt:
    prompt: Prompt
    cuts: tuple[PromptCut, ...] = ()
