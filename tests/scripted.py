"""A policy whose replies are given in advance: the LLM stand-in for tests of what reads replies (proposals, the
step evaluator), where the subject is the parsing and the rules, not the model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jitrl_bench.contract import Generated, Generator, Prompt, Scored, Usage
from jitrl_bench.policies.tokens import ApproxWindow


@dataclass
class Scripted:
    """A policy whose replies are given in advance (one per generate call)."""

    replies: list[str]
    name: str = "scripted"
    window: ApproxWindow = field(default_factory=ApproxWindow)
    asked: list[Prompt] = field(default_factory=list)

    def generate(self, prompt: Prompt, max_new_tokens: int = 64, schema: Mapping[str, Any] | None = None) -> Generated:
        self.asked.append(prompt)
        return Generated(self.replies.pop(0), Usage(1, 10, 5))

    def score(self, prompt: Prompt, candidates: Any) -> Scored:
        return Scored(np.log(np.full(len(candidates), 1 / len(candidates))), Usage(1, 10, 0))

    def chooser(self) -> None:
        return None

    def generator(self) -> Generator:
        return self

    def completer(self) -> None:
        return None

    def close(self) -> None:
        return None
