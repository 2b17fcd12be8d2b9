"""The web prompt: goal, URL, the page cut to the policy's window by tokens, candidates with role and label.

A WebArena page's accessibility tree is 10-100x longer than a small model's window, so the page is cut by tokens,
never by characters: lines that hold an element the agent can act on come first, then the lines around them (their
headings and text), then the rest, until the budget is spent; the kept lines stay in page order, and what was cut is
recorded in the decision trace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from jitrl_bench.contract import MAX_OPTIONS, ContextWindow, Prompt, PromptCut, RenderedPrompt, StepView, Turn

GRAMMAR = (
    "Reply with exactly one action: click('id'), fill('id', 'text'), select_option('id', 'option'), "
    "press('id', 'Enter'), scroll(0, 300), go_back(), goto('url')"
)
SYSTEM = (
    "You are a web agent. You see the page as an accessibility tree: one element per line, and [id] marks an "
    "element you can act on. Choose the single best next action for the goal from the candidate actions."
)
RESERVE = 24  # tokens kept free: the chat template's own tokens, and the first tokens of the reply
CONTEXT_LINES = 1  # lines kept on each side of an actionable line, when the budget allows
BID = re.compile(r"^\s*\[([A-Za-z]*[0-9]+)\]")
EMPTY_TEXT = re.compile(r"^\s*StaticText\s+''\s*$")


@dataclass(frozen=True)
class WebPrompt:
    """One layout for every web task set; a task set adds how it wants to be answered (`instruction`)."""

    instruction: str = ""
    """Appended to the system text, e.g. WebArena-Verified's answer format."""
    max_history: int = 5

    def render(self, view: StepView, history: Sequence[Turn], window: ContextWindow) -> RenderedPrompt:
        system = f"{SYSTEM} {GRAMMAR}, or answer('text') when the task asks for an answer.{self.instruction}"
        head = [f"Goal: {view.goal}", f"URL: {view.url}"]
        if history:
            done = [f"{turn.action} ({turn.label})" for turn in history[-self.max_history :]]
            head.append("Previous actions: " + "; ".join(done))
        cuts: list[PromptCut] = []
        # Candidates take at most half the window (a page with hundreds of links); the page gets what is left.
        listed = [line_of(c.action, c.label) for c in view.candidates]
        costs = window.count(listed)
        shown = keep_prefix(listed, costs, window.max_prompt_tokens // 2)
        if len(shown) < len(listed):
            cuts.append(PromptCut("candidates", sum(costs), sum(costs[: len(shown)]), len(listed), len(shown)))
            shown.append(f"... and {len(listed) - len(shown)} more")
        tail = ["Candidate actions:", *shown, "Next action:"]
        # Choice mode appends the candidates again as numbered options: keep room for them in either mode.
        options = sum(costs[: len(shown)]) + 3 * len(shown) if len(listed) <= MAX_OPTIONS else 0
        room = window.max_prompt_tokens - options - RESERVE

        def assemble(kept: list[str]) -> Prompt:
            return Prompt.chat(system, "\n".join([*head, "Page:", *kept, *tail]))

        page = [line for line in view.observation.splitlines() if line.strip() and not EMPTY_TEXT.match(line)]
        page_costs = window.count(page)
        budget = room - window.prompt_tokens(assemble([]))
        kept = fit_lines(page, page_costs, budget, actionable(page, view))
        prompt = assemble(kept)
        while kept and window.prompt_tokens(prompt) > room:  # per-line counts miss a few join tokens: trim
            kept = kept[: len(kept) * 9 // 10]
            prompt = assemble(kept)
        if len(kept) < len(page):
            after = sum(window.count(kept)) if kept else 0
            cuts.append(PromptCut("page", sum(page_costs), after, len(page), len(kept)))
        return RenderedPrompt(prompt, tuple(cuts))


def line_of(action: str, label: str) -> str:
    return action if action == label else f"{action}  # {label}"


def keep_prefix(lines: list[str], costs: list[int], budget: int) -> list[str]:
    """The first lines whose tokens (plus a newline each) fit the budget."""
    spent, kept = 0, []
    for line, cost in zip(lines, costs, strict=True):
        if spent + cost + 1 > budget:
            break
        spent += cost + 1
        kept.append(line)
    return kept


def actionable(page: list[str], view: StepView) -> set[int]:
    """Indices of the page lines that hold an element some candidate acts on."""
    bids = {m.group(1) for c in view.candidates if (m := re.search(r"\('([^']+)'", c.action))}
    return {i for i, line in enumerate(page) if (m := BID.match(line)) and m.group(1) in bids}


def fit_lines(lines: list[str], tokens: list[int], budget: int, first: set[int]) -> list[str]:
    """The lines to keep, in page order: actionable lines first, then their neighbours, then the rest, while the
    budget lasts (each line costs its tokens plus one for the newline; a line too long to fit is skipped)."""
    if sum(tokens) + len(lines) <= budget:
        return list(lines)
    near = {j for i in first for j in range(i - CONTEXT_LINES, i + CONTEXT_LINES + 1) if 0 <= j < len(lines)} - first
    order = sorted(first) + sorted(near) + [i for i in range(len(lines)) if i not in first and i not in near]
    chosen: set[int] = set()
    spent = 0
    for i in order:
        if spent + tokens[i] + 1 <= budget:
            chosen.add(i)
            spent += tokens[i] + 1
    return [lines[i] for i in sorted(chosen)]


def normalize_url(url: str, sites: Mapping[str, str] = {}) -> str:
    """A page's URL as retrieval compares it, as the reference code does: the site's name instead of host and port,
    the path without query or fragment, numeric ids as ID, tokens and base64 as HASH, nothing after /filter/."""
    parts = urlsplit(url)
    site = next((name for name, base in sites.items() if url.startswith(base.rstrip("/"))), "")
    if not site:
        site = parts.netloc or parts.scheme or "page"
    path = parts.path
    if parts.scheme == "file":
        path = path.rsplit("/", 1)[-1]
    segments = []
    for segment in path.strip("/").split("/"):
        if not segment:
            continue
        if segment == "filter":
            break
        segments.append(_segment(segment))
    return "/".join([site, *segments])


def _segment(segment: str) -> str:
    if segment.isdigit():
        return "ID"
    mixed_case = segment != segment.lower() and segment != segment.upper()
    if any(ch in segment for ch in "+=") or (len(segment) > 12 and mixed_case and "_" not in segment):
        return "HASH"
    return segment
