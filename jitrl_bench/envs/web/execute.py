"""One parsed action run on the page with BrowserGym's action code.

`run_action` takes only a call already validated and rebuilt by `jitrl_bench.contract.web_actions`; model text never
reaches it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import playwright.sync_api as pw
from browsergym.core.action.base import execute_python_code
from browsergym.core.action.highlevel import HighLevelActionSet

from jitrl_bench.contract.web_actions import Action
from jitrl_bench.envs.web.browser import ACTION_TIMEOUT_MS

ELEMENT_TIMEOUT_MS = 2000  # one element action (click, fill, hover...): BrowserGym's code says 500, see element_timeout


@dataclass
class ActionResult:
    """What running one action produced: an error message ("" when it worked) and messages sent to the user."""

    error: str = ""
    messages: list[str] = field(default_factory=list)
    infeasible: list[str] = field(default_factory=list)


ACTION_SET = HighLevelActionSet(
    subsets=["chat", "infeas", "bid", "nav"], multiaction=False, strict=True, demo_mode="off"
)
"""Strict, one call, no demo effects: the grammar check BrowserGym applies before its own exec of the action code."""


def element_timeout(action_set: HighLevelActionSet, ms: int) -> HighLevelActionSet:
    """Give each element action `ms` instead of the 500 ms written into BrowserGym's action code.

    On a busy 2-core machine Chromium sometimes needs more than 500 ms to find a link actionable, and a correct click
    then counts as the agent's error: scores would depend on the machine's load. Only the literal timeouts of the
    included functions change; the count is checked so that a BrowserGym release that renames them fails loudly here.
    """
    literal = "timeout=500)"
    found = action_set.python_includes.count(literal)
    if found == 0:
        raise RuntimeError("BrowserGym's action code has no 500 ms element timeouts: revisit element_timeout")
    action_set.python_includes = action_set.python_includes.replace(literal, f"timeout={ms})")
    return action_set


ACTION_SET = element_timeout(ACTION_SET, ELEMENT_TIMEOUT_MS)


def run_action(page: pw.Page, action: Action) -> ActionResult:
    """Run one parsed action on the page with BrowserGym's action code.

    It takes an `Action` (from `actions.parse_action`), never text: only the call rebuilt from validated constants
    reaches BrowserGym, whose strict single-action grammar checks it once more before its code runs.
    """
    result = ActionResult()
    try:
        code = ACTION_SET.to_python_code(action.call)
        execute_python_code(code, page, result.messages.append, result.infeasible.append)
    except Exception as error:  # a failed action is feedback for the agent (element gone, timeout), not a crash
        result.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:500]
    with contextlib.suppress(pw.Error):  # a page still loading is observed as it is
        page.wait_for_load_state("domcontentloaded", timeout=ACTION_TIMEOUT_MS)
    return result
