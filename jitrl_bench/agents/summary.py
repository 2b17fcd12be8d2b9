"""The paper's Jericho state summary: at each step an LLM rewrites what the episode has achieved so far (the
milestones where the score rose, the path through the locations without loops), and that text becomes the state field
`summary`, which the lexical re-rank reads (unigram side, with the inventory) and the prompt shows.

As in the reference, it is written from step 1 on (step 0 has no history), from every earlier step's observation and
action. It is cached per step of an episode: each step asks once, and the trace keeps what it said.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from jitrl_bench.checks import Checked, at_least, between, one_of
from jitrl_bench.contract import SUMMARIZING, EpisodeContext, Ledger, Policy, Prompt
from jitrl_bench.replies import json_object

SYSTEM = (
    "You keep the notes of a text-adventure player. From the steps so far, write what matters for playing on: a "
    "short summary of the objective and progress, the milestones (only the steps that raised the score, as "
    "'verb -> result'), and the path through the locations with back-and-forth removed. Reply with JSON only."
)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "maxLength": 400},
        "milestones": {"type": "array", "items": {"type": "string", "maxLength": 80}, "maxItems": 12},
        "locations": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 12},
    },
    "required": ["summary", "milestones", "locations"],
}


@dataclass
class SummaryConfig(Checked):
    """Whether the agent keeps an LLM-written summary of the episode as the state field `summary`."""

    mode: str = "none"
    """none | llm (the paper's Jericho setting: one call per step from step 1)."""
    steps_shown: int = 20
    """The last steps the summariser reads (the reference shows all earlier steps; long episodes are cut)."""
    max_new_tokens: int = 200

    def check(self) -> None:
        one_of("mode", self.mode, ("none", "llm"))
        between("steps_shown", self.steps_shown, 1, 200)
        at_least("max_new_tokens", self.max_new_tokens, 32)


class Summarizer:
    """The `summary` field of each step of each episode in flight, written once per step."""

    def __init__(self, cfg: SummaryConfig, policy: Policy) -> None:
        self.cfg = cfg
        self.policy = policy
        self._cache: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    def summary(self, ctx: EpisodeContext, observation: str, ledger: Ledger) -> str:
        """This step's summary ("" at step 0, or when the policy cannot write text)."""
        step = len(ctx.history)
        generator = self.policy.generator()
        if step == 0 or generator is None:
            return ""
        with self._lock:
            known = self._cache.get((ctx.uid, step))
        if known is not None:
            return known
        shown = ctx.history[-self.cfg.steps_shown :]
        first = step - len(shown)
        lines = [f"Step {first + i + 1}: {' '.join(t.observation.split())[:300]}\nAction: {t.action}"
                 for i, t in enumerate(shown)]  # fmt: skip
        lines.append(f"Now: {' '.join(observation.split())[:300]}")
        reply = generator.generate(Prompt.chat(SYSTEM, "\n".join(lines)), self.cfg.max_new_tokens, SCHEMA)
        ledger.charge(SUMMARIZING, reply.usage)
        text = render(reply.text)
        with self._lock:
            self._cache[(ctx.uid, step)] = text
        return text

    def forget(self, ctx: EpisodeContext) -> None:
        with self._lock:
            for key in [key for key in self._cache if key[0] == ctx.uid]:
                del self._cache[key]


def render(reply: str) -> str:
    """The reply as the state field: milestones and locations (what the lexical re-rank compares), then the summary;
    a reply that is not the JSON asked for is kept as text."""
    data, _ = json_object(reply)
    if data is None:
        return " ".join(reply.split())[:600]
    milestones = [str(m) for m in data.get("milestones") or [] if str(m).strip()]
    locations = [str(p) for p in data.get("locations") or [] if str(p).strip()]
    parts = ["Progress: " + ("; ".join(milestones) if milestones else "no progress")]
    if locations:
        parts.append("Location: " + " -> ".join(locations))
    if str(data.get("summary") or "").strip():
        parts.append("Summary: " + " ".join(str(data["summary"]).split()))
    return "\n".join(parts)
