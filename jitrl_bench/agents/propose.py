"""Candidate proposal, the paper's default: the LLM names its K best next actions (from the env's list it is shown),
each with a reason and a 0-100 confidence, and which one is best, in JSON. Base scores p come from the confidences
(`verbalized`: p = confidence / 100) or from the policy's own probabilities over the proposed actions (`token`: the
option-index token's log-probs in choice mode, the actions' summed token log-probs otherwise).

A reply that is not usable gets one repair attempt (the model is told what was wrong); after that the agent falls back
to scoring the env's candidates, and the decision says so. A proposed action the env does not list is kept (text
games take any command: the reference keeps them) or dropped (`outside`); on the web an action must be one of the
page's candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jitrl_bench.checks import Checked, at_least, between, one_of
from jitrl_bench.contract import ACTING, PROPOSING, Candidate, Ledger, Message, Policy, Prompt, StepView
from jitrl_bench.jitrl.update import softmax
from jitrl_bench.replies import json_reply
from jitrl_bench.text import action_key

MODES = ("none", "verbalized", "token")


@dataclass
class ProposalConfig(Checked):
    """How an agent gets its candidates: the env's list (`none`) or the LLM's proposals."""

    mode: str = "none"
    """none: score every candidate the env lists. verbalized: the LLM proposes k actions with 0-100 confidences,
    p = confidence / 100 (the paper's default). token: the LLM proposes k actions, p = π_θ over them."""
    k: int = 3
    """Actions proposed per step (the reference: 3)."""
    outside: str = "keep"
    """A proposed action the env does not list: keep it (text games accept any command; the reference keeps them)
    or drop it. Web actions are always dropped unless the page offers them."""
    max_new_tokens: int = 256
    """Reply budget of one proposal."""

    def check(self) -> None:
        one_of("mode", self.mode, MODES)
        between("k", self.k, 1, 20, "options per step")
        one_of("outside", self.outside, ("keep", "drop"))
        at_least("max_new_tokens", self.max_new_tokens, 32)


@dataclass(frozen=True)
class Proposal:
    """What the LLM proposed this step, as candidates with base scores."""

    candidates: tuple[Candidate, ...]
    p: np.ndarray
    """Base score of each candidate: confidence / 100 (verbalized) or π_θ (token)."""
    best: int | None
    """The LLM's own pick among `candidates` (None when it named none that survived)."""
    reasons: tuple[str, ...]
    usage: Ledger = field(default_factory=Ledger)
    dropped: tuple[str, ...] = ()
    """Proposed actions the env does not offer (dropped by `outside`)."""
    repaired: bool = False
    replaced: int = 0
    """Lone surrogates in the used reply's strings replaced by U+FFFD (see `jitrl_bench.text`)."""


@dataclass(frozen=True)
class NoProposal:
    """The proposal failed twice: why, and what asking cost. The agent scores the env's candidates instead."""

    reason: str
    usage: Ledger


def schema(k: int) -> dict[str, Any]:
    option = {
        "type": "object",
        "properties": {
            "action": {"type": "string", "maxLength": 120},
            "reason": {"type": "string", "maxLength": 200},
            "confidence": {"enum": list(range(101))},
        },
        "required": ["action", "reason", "confidence"],
    }
    return {
        "type": "object",
        "properties": {
            "options": {"type": "array", "items": option, "minItems": k, "maxItems": k},
            "best": {"enum": list(range(1, k + 1))},
        },
        "required": ["options", "best"],
    }


def instruction(k: int) -> str:
    shape = ", ".join('{"action": ..., "reason": ..., "confidence": 0-100}' for _ in range(min(k, 2)))
    return (
        f"\n\nPropose the {k} best next actions, each taken from the actions listed above, with a short reason and "
        f"your confidence (0 to 100) that it is the best one; the confidences should sum to 100 and differ. Then "
        f'give the number of the best one. Reply with JSON only: {{"options": [{shape}, ...], "best": 1}}'
    )


def propose(cfg: ProposalConfig, policy: Policy, prompt: Prompt, view: StepView) -> Proposal | NoProposal:
    """Ask for cfg.k proposals (one repair on a bad reply), match them to the env's candidates, score them."""
    ledger = Ledger()
    generator = policy.generator()
    if generator is None:
        return NoProposal(f"policy {policy.name} cannot write text", ledger)
    asked = with_instruction(prompt, instruction(cfg.k))
    shape = schema(cfg.k)
    reply = generator.generate(asked, cfg.max_new_tokens, shape)
    ledger.charge(PROPOSING, reply.usage)
    options, problem, replaced = parse_reply(reply.text, cfg.k)
    repaired = False
    if options is None:
        fix = f"That reply is unusable ({problem}). Reply with JSON only, in the shape asked for."
        again = Prompt((*asked.messages, Message("assistant", reply.text[:2000]), Message("user", fix)))
        reply = generator.generate(again, cfg.max_new_tokens, shape)
        ledger.charge(PROPOSING, reply.usage)
        options, problem, replaced = parse_reply(reply.text, cfg.k)
        repaired = True
    if options is None:
        return NoProposal(f"proposal unusable after one repair: {problem}", ledger)
    kept, confidences, reasons, dropped, best = match(options, view, cfg.outside)
    if not kept:
        return NoProposal(f"no proposed action is one the env offers: {', '.join(dropped)}", ledger)
    if cfg.mode == "token":  # choice mode: the option-index token's log-probs; score mode: the actions' own
        scored = policy.score(prompt, [c.action for c in kept])
        ledger.charge(ACTING, scored.usage)
        p = softmax(scored.z)
    else:
        p = np.asarray(confidences, dtype=np.float64) / 100.0
    return Proposal(tuple(kept), p, best, tuple(reasons), ledger, tuple(dropped), repaired, replaced + reply.replaced)


@dataclass(frozen=True)
class Option:
    action: str
    reason: str
    confidence: float
    best: bool


def parse_options(text: str, k: int) -> tuple[list[Option] | None, str]:
    """{"options": [{"action", "reason", "confidence"}, ...], "best": n} anywhere in the text; confidences clipped to
    [0, 100]; at most k options; (None, why) when no option is usable."""
    options, problem, _ = parse_reply(text, k)
    return options, problem


def parse_reply(text: str, k: int) -> tuple[list[Option] | None, str, int]:
    """`parse_options`, and the number of lone surrogates its strings had (replaced by U+FFFD)."""
    reply = json_reply(text)
    data = reply.data
    if data is None:
        return None, reply.problem, 0
    entries = data.get("options")
    if not isinstance(entries, list):
        return None, 'no "options" list', 0
    best = data.get("best")
    options = []
    for i, entry in enumerate(entries[:k]):
        if not isinstance(entry, dict) or not isinstance(entry.get("action"), str) or not entry["action"].strip():
            continue
        confidence = entry.get("confidence")
        value = float(confidence) if isinstance(confidence, int | float) and not isinstance(confidence, bool) else 0
        reason = entry.get("reason")
        options.append(
            Option(" ".join(entry["action"].split()), str(reason or ""), min(max(value, 0.0), 100.0), best == i + 1)
        )
    if not options:
        return None, "no option has an action", 0
    return options, "", reply.replaced


def match(
    options: list[Option], view: StepView, outside: str
) -> tuple[list[Candidate], list[float], list[str], list[str], int | None]:
    """The options as candidates: the env's own candidate when it lists the action (same text, or the same key),
    else kept as a free command (text games, outside=keep) or dropped. Repeats merge (highest confidence)."""
    by_action = {c.action.lower(): c for c in view.candidates}
    kept: dict[str, tuple[Candidate, float, str, bool]] = {}
    dropped = []
    for option in options:
        found = by_action.get(option.action.lower()) or view.ground(action_key(option.action))
        if found is None or (outside == "drop" and found.action not in view.actions):
            dropped.append(option.action)
            continue
        previous = kept.get(found.key)
        if previous is None or option.confidence > previous[1]:
            kept[found.key] = (found, option.confidence, option.reason, option.best or bool(previous and previous[3]))
    entries = list(kept.values())
    best = next((i for i, entry in enumerate(entries) if entry[3]), None)
    return [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries], dropped, best


def with_instruction(prompt: Prompt, text: str) -> Prompt:
    """The prompt with `text` appended to its last user message."""
    messages = list(prompt.messages)
    last = max(i for i, m in enumerate(messages) if m.role == "user")
    messages[last] = Message("user", messages[last].content + text)
    return Prompt(tuple(messages))
