"""The policy seam: a frozen LLM that scores candidate actions (and can write free text)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Prompt:
    """A chat prompt. The candidate action is scored as the assistant's reply to it."""

    messages: tuple[Message, ...]

    @classmethod
    def chat(cls, system: str, user: str) -> Prompt:
        return cls((Message("system", system), Message("user", user)))


class Policy(Protocol):
    """log π_θ over a candidate set: one logit per candidate, z_i = Σ_t log p(token_t | prompt, earlier tokens)."""

    name: str
    tokens_used: int  # prompt + candidate tokens processed so far (for cost accounting)

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> np.ndarray:
        """Return float64 array of shape (len(candidates),): the summed token log-probs of each candidate reply,
        end-of-turn token included."""
        ...

    def generate(self, prompt: Prompt, max_new_tokens: int = 64) -> str:
        """Greedy free-text reply (for agents that need text, e.g. summaries)."""
        ...


class PolicyConfig(Protocol):
    def make(self) -> Policy: ...
