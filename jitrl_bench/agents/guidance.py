"""Text a learning agent puts in the prompt, and where: the in-context baselines' one channel.

A method's guidance goes where the method puts it — the system text (AWM's workflows, ReasoningBank's items) or the
user turn before the step (Reflexion's reflections, earlier episodes, Prompt Update's neighbours) — and the env's
own prompt is rendered in the window that is left, so the step itself is never cut for it. Guidance over
`share` of the window is cut oldest line first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jitrl_bench.contract import ContextWindow, Message, Prompt, PromptCut, RenderedPrompt, StepView, Turn

SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Guidance:
    system: str = ""
    """Appended to the system text."""
    context: str = ""
    """Placed before the step's text in the user turn."""
    sources: tuple[str, ...] = ()
    """The notes it was made from (their episode uids), for the trace."""
    neighbours: tuple[dict[str, object], ...] = ()
    """The memory entries it was made from, as a decision traces neighbours (`recall.traced`): their ids are the
    run's memory ids, which a Ray run's driver rewrites in one place."""

    @property
    def empty(self) -> bool:
        return not (self.system.strip() or self.context.strip())


NO_GUIDANCE = Guidance()


class NarrowedWindow:
    """The policy's window less what the guidance takes."""

    def __init__(self, window: ContextWindow, reserved: int) -> None:
        self.window = window
        self.reserved = reserved

    @property
    def max_prompt_tokens(self) -> int:
        return max(self.window.max_prompt_tokens - self.reserved, 16)

    def count(self, texts: Sequence[str]) -> list[int]:
        return self.window.count(texts)

    def prompt_tokens(self, prompt: Prompt) -> int:
        return self.window.prompt_tokens(prompt)


def keep_last(lines: list[str], window: ContextWindow, budget: int) -> list[str]:
    """The newest lines that fit `budget` tokens (oldest cut first)."""
    costs = window.count(lines) if lines else []
    kept: list[str] = []
    used = 0
    for line, cost in zip(reversed(lines), reversed(costs), strict=True):
        if used + cost + 1 > budget:
            break
        kept.append(line)
        used += cost + 1
    return kept[::-1]


def render_guided(
    view: StepView, history: Sequence[Turn], window: ContextWindow, guidance: Guidance, share: float = 0.5
) -> RenderedPrompt:
    """The env's prompt for the step with the guidance in its place, within the policy's window."""
    if guidance.empty:
        return view.layout.render(view, history, window)
    budget = int(window.max_prompt_tokens * share)
    system_lines, context_lines = guidance.system.splitlines(), guidance.context.splitlines()
    before = sum(window.count([guidance.system, guidance.context]))
    cuts: list[PromptCut] = []
    if before > budget:  # the context goes first (it is the older, longer part), then the system text
        (system_cost,) = window.count([guidance.system])
        context_lines = keep_last(context_lines, window, max(budget - system_cost, 0))
        if system_cost > budget:
            system_lines = keep_last(system_lines, window, budget)
    system, context = "\n".join(system_lines), "\n".join(context_lines)
    after = sum(window.count([system, context]))
    if after < before:
        cuts.append(PromptCut("guidance", before, after, guidance.context.count("\n") + 1, len(context_lines)))
    rendered = view.layout.render(view, history, NarrowedWindow(window, after + 8))
    return RenderedPrompt(with_guidance(rendered.prompt, system, context), (*rendered.cuts, *cuts))


def with_guidance(prompt: Prompt, system: str, context: str) -> Prompt:
    """The prompt with `system` appended to its system message and `context` before its last user message."""
    messages = list(prompt.messages)
    if system:
        at = next((i for i, m in enumerate(messages) if m.role == "system"), None)
        if at is None:
            messages.insert(0, Message("system", system))
        else:
            messages[at] = Message("system", messages[at].content + SEPARATOR + system)
    if context:
        at = max(i for i, m in enumerate(messages) if m.role == "user")
        messages[at] = Message("user", context + SEPARATOR + messages[at].content)
    return Prompt(tuple(messages))
