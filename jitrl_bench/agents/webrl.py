"""WebRL (Qi et al., 2025; THUDM/WebRL): fine-tuned web agents (`THUDM/webrl-llama-3.1-8b` and kin), run as they
were trained in VisualAgentBench's WebArena-Lite, as the RL-trained baseline beside JitRL:

- observation: the page's simplified HTML with its own element numbers (`envs/web/simplified_html.py`);
- prompt: a raw completion (no chat template, no system text), "Task Instruction: <intent>", then one block per
  earlier round with its raw reply (earlier pages shown only as "** Simplified html **"), then the current round with
  the page, history + page cut to 15,872 characters (the page's tail goes);
- decoding: greedy, stopped at <|eot_id|>; 2,048 new tokens (the paper's setting; `max_new_tokens`);
- its reply grammar (`webrl_grammar.py`), mapped onto the env's safe operations; a parse failure is a no-op, and the
  episode ends after 5 parse failures in a row or 5 identical replies in a row (the trained runner's limits).

It uses none of the env's candidates: it acts on the page's elements by number, as it was trained to.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from jitrl_bench.agents.base import new_context
from jitrl_bench.agents.webrl_grammar import NOOP, ReplyError, parse_reply, to_env_action
from jitrl_bench.checks import Checked, at_least, name
from jitrl_bench.contract import (
    ACTING,
    BuildContext,
    Completer,
    EpisodeContext,
    FinishedEpisode,
    StepView,
    Usage,
)  # fmt: skip
from jitrl_bench.contract.web_actions import Action
from jitrl_bench.errors import UserError
from jitrl_bench.records import Decision, EpisodeRecord, sha1

USER = "<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
ASSISTANT = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
EARLIER_PAGE = "** Simplified html **"
STOP = ("<|eot_id|>",)


@dataclass
class WebRLConfig(Checked):
    name: str = "webrl"
    max_new_tokens: int = 2048
    """Reply length (the trained runner's 2,048)."""
    max_chars: int = 15872
    """History plus page, in characters (16,384 − 512, as in training)."""
    max_parse_failures: int = 5
    max_repeats: int = 5

    def check(self) -> None:
        name("name", self.name)
        at_least("max_new_tokens", self.max_new_tokens, 16)
        at_least("max_chars", self.max_chars, 256)
        at_least("max_parse_failures", self.max_parse_failures, 1)
        at_least("max_repeats", self.max_repeats, 2)

    def build(self, ctx: BuildContext) -> WebRLAgent:
        completer = ctx.policy.completer()
        if completer is None:
            raise UserError(f"agent {self.name!r} needs a language model; policy {ctx.policy.name!r} has none")
        return WebRLAgent(self, completer)


def webrl_prompt(intent: str, replies: Sequence[str], page: str, max_chars: int) -> str:
    """The completion prompt of round len(replies): the task, every earlier round with its raw reply, the page."""
    earlier = "".join(
        f"Round {i}\n\n{USER}{intent if i == 0 else EARLIER_PAGE}\n\n{ASSISTANT}{reply}\n\n"
        for i, reply in enumerate(replies)
    )
    page = page[: max(max_chars - len(earlier), 0)]
    return f"Task Instruction: {intent}\n\n{earlier}Round {len(replies)}\n\n{USER}{page}\n\n{ASSISTANT}"


@dataclass
class Episode:
    replies: list[str] = field(default_factory=list)
    failures: int = 0
    """Parse failures in a row."""
    then: str = ""
    """An operation the last reply implied for this step (Search: Enter)."""
    last_element: str = ""


class WebRLAgent:
    learns = False
    within_task = True

    def __init__(self, cfg: WebRLConfig, completer: Completer) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.completer = completer
        self._episodes: dict[str, Episode] = {}
        self._lock = threading.Lock()

    def start(self, task: str, episode: int, uid: str, seed: int) -> EpisodeContext:
        with self._lock:
            self._episodes[uid] = Episode()
        return new_context(task, episode, uid, seed)

    def act(self, ctx: EpisodeContext, view: StepView) -> Decision:
        if view.html is None:
            raise UserError(
                f"agent {self.name!r} plays web envs only (it reads the page's HTML): use env=webarena_lite"
            )
        state = self._episodes[ctx.uid]
        if state.then:  # the second half of a Search: Enter, no model call
            action, state.then = state.then, ""
            return self._decision(action, {"implied_by": state.replies[-1]}, Usage(), "")
        prompt = webrl_prompt(view.goal, state.replies, view.html.text, self.cfg.max_chars)
        reply = self.completer.complete(prompt, self.cfg.max_new_tokens, STOP)
        state.replies.append(reply.text)
        notes: dict[str, object] = {"reply": reply.text, "prompt_chars": len(prompt)}
        try:
            parsed = parse_reply(reply.text)
            env_action = to_env_action(parsed, view.html.ids, state.last_element)
        except ReplyError as failure:
            state.failures += 1
            notes["parse_failure"] = str(failure)
            action = NOOP
        else:
            state.failures = 0
            state.last_element = parsed.element or state.last_element
            action, state.then = env_action.text, env_action.then
            notes["parsed"] = parsed.kind
            if parsed.replaced or reply.replaced:
                notes["replaced_surrogates"] = parsed.replaced + reply.replaced
        repeats = len(state.replies) >= self.cfg.max_repeats and len(set(state.replies[-self.cfg.max_repeats :])) == 1
        if state.failures >= self.cfg.max_parse_failures or repeats:
            reason = "parse failures" if state.failures >= self.cfg.max_parse_failures else "repeated replies"
            action = Action("send_msg_to_user", (f"Early stop: {self.cfg.max_repeats} {reason}",)).call
            notes["early_stop"] = reason
        return self._decision(action, notes, reply.usage, sha1(prompt))

    def _decision(self, action: str, notes: dict[str, object], usage: Usage, digest: str) -> Decision:
        return Decision(
            action=action, index=0, candidates=[action], z=[None], notes=notes, usage=usage,
            usage_by_purpose={ACTING: usage} if usage.calls else {}, prompt_sha1=digest,
        )  # fmt: skip

    def finish(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: Sequence[float]) -> Usage:
        with self._lock:
            self._episodes.pop(ctx.uid, None)
        return Usage()

    def restore(self, finished: Sequence[EpisodeRecord]) -> None:
        return None
