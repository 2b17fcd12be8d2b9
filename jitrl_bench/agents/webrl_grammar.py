"""WebRL's reply grammar, read as data, and its mapping onto the env's safe browser operations.

A WebRL checkpoint answers with one line (an optional "# Element: ..." comment before it):

    do(action="Click", element="12")     do(action="Type", argument="blue shirt", element="4")
    do(action="Search", argument="...", element="4")   do(action="Select Dropdown Option", argument="Red", element="7")
    do(action="Hover", element="3")      do(action="Scroll Down")   do(action="Scroll Up")   do(action="Press Enter")
    do(action="Go Backward")             do(action="Go Forward")    exit(message="the answer")

The line is parsed with `ast` and never evaluated: one call of `do` or `exit`, keyword arguments only, every value a
constant. Everything else (the action types the trained parser also rejects: Right Click, Wait, Switch Tab; a bare
`go_backward()`; an element number not on the page) is a parse failure, which the agent answers with a no-op, as
VisualAgentBench's runner does. The element number is the page's own numbering in the simplified HTML, mapped to the
env's element id; the operation is rebuilt from validated values (`envs.actions.Action`) and parsed again by the env.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass

from jitrl_bench.contract.web_actions import MAX_TEXT, Action, ActionError, python_tree
from jitrl_bench.text import valid_text

SCROLL_PIXELS = 480.0
"""Two thirds of the 720-pixel viewport the checkpoints were run with."""
ELEMENT_ACTIONS = {"Click": "click", "Hover": "hover", "Type": "fill", "Search": "fill",
                   "Select Dropdown Option": "select_option"}  # fmt: skip
PAGE_ACTIONS = {"Scroll Down", "Scroll Up", "Press Enter", "Go Backward", "Go Forward"}
WITH_ARGUMENT = {"Type", "Search", "Select Dropdown Option"}


class ReplyError(ValueError):
    """A reply that is not one WebRL action (counted as a parse failure)."""


@dataclass(frozen=True)
class WebRLAction:
    kind: str
    """"exit" or one of the `do` action types ("Click", "Type", ...)."""
    argument: str = ""
    element: str = ""
    message: str = ""
    replaced: int = 0
    """Lone surrogates in its strings replaced by U+FFFD (a `\\ud83d` escape in the reply)."""


def parse_reply(reply: str) -> WebRLAction:
    """The reply's action (the first line that is a call, after any comment lines), or ReplyError."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    calls = [line for line in lines if not line.startswith("#")]
    if not calls:
        raise ReplyError("no do(...) or exit(...) line")
    line = calls[0]
    if len(line) > MAX_TEXT + 200:
        raise ReplyError("the action line is too long")
    try:
        tree = python_tree(line, "eval")  # the token count bounds its nesting
    except ActionError:
        raise ReplyError("not one call") from None
    call = tree.body if isinstance(tree, ast.Expression) else None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.func.id not in ("do", "exit"):
        raise ReplyError("the call is neither do(...) nor exit(...)")
    if call.args:
        raise ReplyError("arguments must be named (action=..., argument=..., element=...)")
    values: dict[str, str] = {}
    replaced = 0
    for keyword in call.keywords:
        if keyword.arg is None or not isinstance(keyword.value, ast.Constant):
            raise ReplyError("every argument must be a constant")
        value = keyword.value.value
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ReplyError(f"{keyword.arg} must be text")
        values[keyword.arg], count = valid_text(str(value))
        replaced += count
    if call.func.id == "exit":
        if set(values) - {"message"}:
            raise ReplyError("exit takes message= only")
        return WebRLAction("exit", message=values.get("message", "")[:MAX_TEXT], replaced=replaced)
    if set(values) - {"action", "argument", "element"}:
        raise ReplyError(f"unknown argument(s): {', '.join(sorted(set(values) - {'action', 'argument', 'element'}))}")
    kind = values.get("action", "")
    if kind not in ELEMENT_ACTIONS and kind not in PAGE_ACTIONS:
        raise ReplyError(f"unsupported action type {kind!r}")
    element = values.get("element", "")
    if kind in ELEMENT_ACTIONS and not element.isdigit():
        raise ReplyError(f'{kind} needs element="N", a number from the page')
    if kind in WITH_ARGUMENT and "argument" not in values:
        raise ReplyError(f"{kind} needs argument=")
    return WebRLAction(kind, values.get("argument", "")[:MAX_TEXT], element, replaced=replaced)


@dataclass(frozen=True)
class EnvAction:
    text: str
    """The operation in the env's grammar, e.g. click('a51')."""
    then: str = ""
    """An operation the same reply implies next (Search: Enter after typing), played at the following step."""


def to_env_action(action: WebRLAction, ids: Mapping[str, str], last_element: str = "") -> EnvAction:
    """The env's operation for a parsed reply; ReplyError for an element number the page does not have."""
    if action.kind == "exit":
        return EnvAction(Action("send_msg_to_user", (action.message,)).call)
    if action.kind in ELEMENT_ACTIONS:
        bid = ids.get(action.element)
        if bid is None:
            raise ReplyError(f"element {action.element} is not on the page")
        verb = ELEMENT_ACTIONS[action.kind]
        if verb == "fill":
            then = Action("press", (bid, "Enter")).call if action.kind == "Search" else ""
            return EnvAction(Action("fill", (bid, action.argument)).call, then)
        if verb == "select_option":
            return EnvAction(Action("select_option", (bid, action.argument)).call)
        return EnvAction(Action(verb, (bid, "left") if verb == "click" else (bid,)).call)
    if action.kind in ("Scroll Down", "Scroll Up"):
        return EnvAction(
            Action("scroll", (0.0, SCROLL_PIXELS if action.kind == "Scroll Down" else -SCROLL_PIXELS)).call
        )
    if action.kind == "Press Enter":
        bid = ids.get(last_element, "")
        return EnvAction(Action("press", (bid, "Enter")).call if bid else Action("noop", (1000,)).call)
    return EnvAction(Action("go_back" if action.kind == "Go Backward" else "go_forward", ()).call)


NOOP = Action("noop", (1000,)).call
