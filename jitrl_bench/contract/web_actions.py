"""Model output is data, never code: an action string is parsed into one operation from a closed set.

BrowserGym runs actions by `exec()` of Python text, and its own allow-list still lets `goto('file:///etc/...')` or
`upload_file` reach local files. So the model's text is parsed here with `ast` (never evaluated): exactly one call to an
allowed operation, every argument a constant of the declared type, bound with `inspect.signature`, element ids of
BrowserGym's form, URLs only to the task's own origins. Only the call rebuilt from those values (`Action.call`) ever
reaches the browser.
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import tokenize
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from jitrl_bench.text import valid_text

BID = re.compile(r"^[a-zA-Z]*[0-9]+$")
KEY_COMBO = re.compile(r"^[A-Za-z0-9]+(\+[A-Za-z0-9]+)*$")  # "Enter", "Control+a", "Shift+ArrowDown"
MAX_TEXT = 2000  # longest string argument (a form value or an answer)
MAX_ACTION = 4000  # longest action text parsed at all
MAX_NUMBER = 10_000.0  # |scroll delta| and wait in ms
MAX_OPERATORS = 120  # operator tokens in one call (50 options take 54): `ast` recurses, so nesting is bounded first
MAX_NAMES = 12  # name tokens in one call (the operation, its keywords)


class ActionError(ValueError):
    """The text is not one allowed action with valid arguments: shown to the agent as feedback, nothing runs."""


# The allowed operations, as signatures only (bodies never run): the names and parameters BrowserGym's actions take.
# `answer` is this project's alias of send_msg_to_user (the agent's final answer).
def click(bid: str, button: Literal["left", "middle", "right"] = "left") -> None: ...
def dblclick(bid: str) -> None: ...
def hover(bid: str) -> None: ...
def focus(bid: str) -> None: ...
def clear(bid: str) -> None: ...
def fill(bid: str, value: str) -> None: ...
def select_option(bid: str, options: str | list[str]) -> None: ...
def press(bid: str, key_comb: str) -> None: ...
def scroll(delta_x: float, delta_y: float) -> None: ...
def noop(wait_ms: float = 1000) -> None: ...
def go_back() -> None: ...
def go_forward() -> None: ...
def goto(url: str) -> None: ...
def send_msg_to_user(text: str) -> None: ...
def answer(text: str) -> None: ...
def report_infeasible(reason: str) -> None: ...


OPERATIONS: dict[str, Callable[..., None]] = {
    f.__name__: f
    for f in (
        click,
        dblclick,
        hover,
        focus,
        clear,
        fill,
        select_option,
        press,
        scroll,
        noop,
        go_back,
        go_forward,
        goto,
        send_msg_to_user,
        answer,
        report_infeasible,
    )
}
ALIASES = {"answer": "send_msg_to_user"}
MESSAGE_OPERATIONS = frozenset({"send_msg_to_user", "report_infeasible"})
"""Operations that end a web episode: the agent's answer, or its report that the task cannot be done."""


@dataclass(frozen=True)
class Action:
    """One validated operation: its BrowserGym name and its arguments in signature order (defaults filled in)."""

    name: str
    args: tuple[Any, ...]
    replaced: int = field(default=0, compare=False)
    """Lone surrogates in the model's strings replaced by U+FFFD (see `jitrl_bench.text`)."""

    @property
    def call(self) -> str:
        """The clean call string, rebuilt from the values (repr of str/float/list[str]): what the browser runs.

        Trailing arguments at their default are left out, so `click('12')` reads as the model wrote it.
        """
        args = list(self.args)
        defaults = [p.default for p in inspect.signature(OPERATIONS[self.name]).parameters.values()]
        while args and defaults[len(args) - 1] is not inspect.Parameter.empty and args[-1] == defaults[len(args) - 1]:
            args.pop()
        return f"{self.name}({', '.join(repr(a) for a in args)})"

    @property
    def bid(self) -> str | None:
        """The element the action targets, if any."""
        params = list(inspect.signature(OPERATIONS[self.name]).parameters)
        return str(self.args[0]) if params and params[0] == "bid" else None

    @property
    def message(self) -> str | None:
        """The text of an answer / infeasibility report."""
        return str(self.args[0]) if self.name in MESSAGE_OPERATIONS else None


def _constant(node: ast.expr) -> Any:
    """A literal value: a str/number/bool constant, a negative number, or a list of those. Nothing else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _constant(node.operand)
        if isinstance(inner, int | float) and not isinstance(inner, bool):
            return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.List):
        return [_constant(item) for item in node.elts]
    raise ActionError(f"arguments must be plain constants, got {type(node).__name__}")


def _check_type(name: str, value: Any, annotation: Any) -> Any:
    """The value converted to the annotated type, or ActionError (bool is not a number, a float is not a str)."""
    if annotation is str:
        if not isinstance(value, str):
            raise ActionError(f"{name} must be a string")
        if len(value) > MAX_TEXT:
            raise ActionError(f"{name} is longer than {MAX_TEXT} characters")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > MAX_NUMBER:
            raise ActionError(f"{name} must be a number between -{MAX_NUMBER:g} and {MAX_NUMBER:g}")
        return float(value)
    if get_origin(annotation) is Literal:
        if value not in get_args(annotation):
            raise ActionError(f"{name} must be one of {', '.join(map(repr, get_args(annotation)))}")
        return value
    if annotation == str | list[str]:  # select_option: one option or several
        values = value if isinstance(value, list) else [value]
        if not values or len(values) > 50:
            raise ActionError(f"{name} must be a string or a list of 1-50 strings")
        checked = [_check_type(name, v, str) for v in values]
        return checked if isinstance(value, list) else checked[0]
    raise ActionError(f"unsupported parameter type for {name}")  # pragma: no cover - the table above is closed


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"


def _check_url(url: str, origins: frozenset[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ActionError("goto only takes http(s) URLs")
    if parts.username or parts.password or any(c.isspace() or ord(c) < 32 for c in url):
        raise ActionError("goto URL must not carry credentials or control characters")
    if _origin(url) not in origins:
        raise ActionError("goto may only visit the task's own sites")


def _strip_fences(text: str) -> str:
    """Models often wrap the call in a code fence or backticks: tolerate that, nothing more."""
    text = text.strip()
    fence = re.fullmatch(r"```[a-zA-Z]*\s*(.*?)\s*```", text, flags=re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    if len(text) >= 2 and text[0] == text[-1] == "`":
        text = text[1:-1].strip()
    return text


def python_tree(source: str, mode: Literal["exec", "eval"]) -> ast.AST:
    """`ast.parse` of model text, once its tokens are few enough that no nesting can exhaust the parser's stack
    (a thousand `-` or `(` raise RecursionError inside `ast`); ActionError when they are not, or it does not parse."""
    operators = names = 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            operators += token.type == tokenize.OP
            names += token.type == tokenize.NAME
            if operators > MAX_OPERATORS or names > MAX_NAMES:
                raise ActionError("not one simple call: too many operators or names")
    except (tokenize.TokenError, SyntaxError) as error:
        raise ActionError(f"not a call: {error.__class__.__name__}") from None
    try:
        return ast.parse(source, mode=mode)
    except (SyntaxError, ValueError) as error:
        raise ActionError(f"not a call: {error.__class__.__name__}") from None


def _valid(value: Any) -> tuple[Any, int]:
    """A constant with its strings made valid Unicode, and how many lone surrogates that replaced."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, list):
        items = [_valid(v) for v in value]
        return [v for v, _ in items], sum(n for _, n in items)
    return value, 0


def parse_action(text: str, allowed_origins: Iterable[str] = ()) -> Action:
    """Parse model text into one allowed `Action`, or raise ActionError. Nothing in `text` is ever evaluated.

    `allowed_origins` are "scheme://host[:port]" strings that `goto` may visit (none: goto is refused).
    """
    if not isinstance(text, str) or len(text) > MAX_ACTION:
        raise ActionError(f"an action is one call of at most {MAX_ACTION} characters")
    tree = python_tree(_strip_fences(text), "exec")
    if (
        not isinstance(tree, ast.Module)
        or len(tree.body) != 1
        or not isinstance(tree.body[0], ast.Expr)
        or not isinstance(tree.body[0].value, ast.Call)
    ):
        raise ActionError("exactly one action call is allowed, e.g. click('12')")
    node = tree.body[0].value
    if not isinstance(node.func, ast.Name) or node.func.id not in OPERATIONS:
        raise ActionError(f"unknown action; allowed: {', '.join(OPERATIONS)}")
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        raise ActionError("*args and **kwargs are not allowed")
    func = OPERATIONS[node.func.id]
    signature = inspect.signature(func, eval_str=True)
    args = [_valid(_constant(a)) for a in node.args]
    kwargs = {str(k.arg): _valid(_constant(k.value)) for k in node.keywords}
    replaced = sum(n for _, n in args) + sum(n for _, n in kwargs.values())
    try:
        bound = signature.bind(*(v for v, _ in args), **{k: v for k, (v, _) in kwargs.items()})
    except TypeError as error:
        raise ActionError(f"{node.func.id}: {error}") from None
    bound.apply_defaults()
    values = []
    for name, value in bound.arguments.items():
        if name == "bid" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # click(12) means click('12')
        checked = _check_type(name, value, signature.parameters[name].annotation)
        if name == "bid" and not BID.match(checked):
            raise ActionError("an element id looks like '12' or 'a12'")
        if name == "key_comb" and not KEY_COMBO.match(checked):
            raise ActionError("a key looks like 'Enter' or 'Control+a'")
        if name == "wait_ms" and checked < 0:
            raise ActionError("wait_ms must not be negative")
        if name == "url":
            _check_url(checked, frozenset(_origin(o) for o in allowed_origins))
        values.append(checked)
    return Action(ALIASES.get(node.func.id, node.func.id), tuple(values), replaced)


def describe_actions() -> str:
    """One line per allowed operation, for the agent's prompt."""
    lines = []
    for name, func in OPERATIONS.items():
        params = [
            f"{p.name}: {p.annotation}" + ("" if p.default is inspect.Parameter.empty else f" = {p.default!r}")
            for p in inspect.signature(func).parameters.values()
        ]
        lines.append(f"{name}({', '.join(params)})")
    return "\n".join(lines)
