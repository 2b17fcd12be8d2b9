"""Model output is data: injection attempts are rejected by the parser, and through a real env step nothing runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from jitrl_bench.contract.web_actions import ActionError, describe_actions, parse_action

if TYPE_CHECKING:
    from jitrl_bench.envs.web.env import WebEnv

ORIGIN = "http://127.0.0.1:8023"

INJECTIONS = [
    "click('12'); import os; os.system('touch PWNED')",
    "click('12')\nimport os\nos.system('touch PWNED')",
    "import os",
    "__import__('os').system('touch PWNED')",
    "click(__import__('os').system('touch PWNED'))",
    "click('12', button=__import__('os').system('touch PWNED'))",
    "click('1' + '2')",
    "click('12'.join(['a']))",
    "click(f\"{__import__('os').system('touch PWNED')}\")",
    "click(f'12')",
    "click((lambda: '12')())",
    "(lambda: __import__('os').system('touch PWNED'))()",
    "os.system('touch PWNED')",
    "page.evaluate('1')",
    "click.__globals__",
    "click.__globals__['os'].system('touch PWNED')",
    "fill('12', \"x\"); exec(\"import os; os.system('touch PWNED')\")",
    "fill('12', 'a'', 'b')",
    "eval(\"__import__('os').system('touch PWNED')\")",
    "exec('x')",
    "click(*['12'])",
    "click(**{'bid': '12'})",
    "click(x)",
    "click(None)",
    "click(True)",
    "click(b'12')",
    "click('12; rm -rf /')",
    "click('../12')",
    "click('12', 'left', ['Shift'])",
    "click('12', button='top')",
    "click('12', modifiers=['Shift'])",
    "click()",
    "fill('12')",
    "fill('12', 5)",
    "goto('file:///etc/hostname')",
    "goto('javascript:alert(1)')",
    "goto('data:text/html,<script>1</script>')",
    "goto('chrome://settings')",
    "goto('http://evil.example.com/')",
    "goto('http://user:pw@127.0.0.1:8023/')",
    "goto('//127.0.0.1:8023/')",
    "upload_file('12', '/etc/passwd')",
    "new_tab()",
    "tab_focus(0)",
    "keyboard_type('x')",
    "mouse_click(1, 2)",
    "press('12', 'Enter; import os')",
    "scroll(1e9, 0)",
    "noop(-5)",
    "[click('12')]",
    "x = click('12')",
    "click('12') if True else 0",
    "",
    "   ",
    "click('12'" + ")" * 2,
    "click('" + "x" * 5000 + "')",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_rejected(text: str) -> None:
    with pytest.raises(ActionError):
        parse_action(text, [ORIGIN])


@pytest.mark.parametrize(
    ("text", "call"),
    [
        ("click('12')", "click('12')"),
        ("click(12)", "click('12')"),
        ('click("a51", button="right")', "click('a51', 'right')"),
        ("  ```python\nclick('12')\n```  ", "click('12')"),
        ("`click('12')`", "click('12')"),
        ("fill('12', 'it\\'s \"quoted\"')", "fill('12', 'it\\'s \"quoted\"')"),
        ("fill('12', \"'); import os; ('\")", "fill('12', \"'); import os; ('\")"),
        ("select_option('7', ['red', 'blue'])", "select_option('7', ['red', 'blue'])"),
        ("press('3', 'Control+a')", "press('3', 'Control+a')"),
        ("scroll(0, -200)", "scroll(0.0, -200.0)"),
        ("fill('12', 'it\\'s')  # ); import os", "fill('12', \"it's\")"),  # a comment is not code
        ("noop()", "noop()"),
        ("go_back()", "go_back()"),
        ("goto('http://127.0.0.1:8023/a/b?c=1')", "goto('http://127.0.0.1:8023/a/b?c=1')"),
        ("answer('42 apples')", "send_msg_to_user('42 apples')"),
        ("send_msg_to_user(text='done')", "send_msg_to_user('done')"),
        ("report_infeasible('no such page')", "report_infeasible('no such page')"),
    ],
)
def test_accepted_and_rebuilt(text: str, call: str) -> None:
    action = parse_action(text, [ORIGIN])
    assert action.call == call
    assert parse_action(action.call, [ORIGIN]) == action  # the clean call means the same thing


def test_goto_needs_an_allowed_origin() -> None:
    with pytest.raises(ActionError):
        parse_action("goto('http://127.0.0.1:8023/')")
    assert parse_action("goto('HTTP://127.0.0.1:8023/x')", [ORIGIN]).name == "goto"
    with pytest.raises(ActionError):
        parse_action("goto('http://127.0.0.1:8024/')", [ORIGIN])


def test_message_and_bid() -> None:
    assert parse_action("answer('x')").message == "x"
    assert parse_action("click('b7')").bid == "b7"
    assert parse_action("scroll(0, 1)").bid is None
    assert "upload_file" not in describe_actions() and "fill(bid: str, value: str)" in describe_actions()


@pytest.fixture(scope="module")
def enter_text() -> Iterator[WebEnv]:
    """A real MiniWoB page in Chromium (skipped without the web extra or Chromium: the parser tests still run)."""
    pytest.importorskip("browsergym.core", reason="needs the web extra")
    from jitrl_bench.envs.web.browser import chromium_executable
    from jitrl_bench.envs.web.miniwob import MiniWoBConfig
    from jitrl_bench.errors import UserError

    try:
        chromium_executable()
    except UserError as missing:
        pytest.skip(str(missing))
    env = MiniWoBConfig(tasks="enter-text").make("enter-text")
    yield env
    env.close()


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _textbox_value(env: WebEnv) -> str:
    from jitrl_bench.envs.web.browser import on_browser_thread

    def read() -> str:
        assert env.page is not None
        return env.page.locator("input").first.input_value()

    return on_browser_thread(read)


@pytest.mark.parametrize("text", [t for t in INJECTIONS if "PWNED" in t or "fill" in t or "goto" in t])
def test_env_step_runs_nothing_rejected(enter_text: WebEnv, in_tmp: Path, text: str) -> None:
    _, info = enter_text.reset(seed=3)
    box = next(c for c, k in zip(info["candidates"], info["action_keys"], strict=True) if k.startswith("fill"))
    bid = box.split("'")[1]
    text = text.replace("'12'", repr(bid))  # aim at the real text box: had the prefix run, the value would change
    obs, reward, terminated, _, info = enter_text.step(text)
    assert obs.startswith("Last action failed: invalid action")
    assert info["last_action_error"] and reward == 0.0 and not terminated
    assert _textbox_value(enter_text) == ""
    assert info["url"].endswith("enter-text.html")
    assert not (in_tmp / "PWNED").exists() and not Path("PWNED").exists() and not os.path.exists("/PWNED")


def test_env_step_values_are_data(enter_text: WebEnv, in_tmp: Path) -> None:
    """A value full of quotes and code reaches the page as text, exactly."""
    _, info = enter_text.reset(seed=3)
    bid = next(c for c, k in zip(info["candidates"], info["action_keys"], strict=True) if k.startswith("fill"))
    value = "a'b\"c\\d'); import os; os.system('touch PWNED'); ('"
    _, _, _, _, info = enter_text.step(f"fill({bid.split(chr(39))[1]!r}, {value!r})")
    assert info["last_action_error"] == ""
    assert _textbox_value(enter_text) == value
    assert not (in_tmp / "PWNED").exists()


@pytest.mark.parametrize(
    "inner",
    ["-" * 1000 + "1", "-" * 3900 + "1", "(" * 1000 + "1" + ")" * 1000, "[" * 1000 + "]" * 1000, "not " * 900 + "1",
     "1**" * 1200 + "1", "x." * 1900 + "x", "f" + "()" * 1900],
)  # fmt: skip
def test_an_action_nested_thousands_deep_is_rejected_not_a_recursion_error(inner: str) -> None:
    """Mutant caught (tried): without the token bound in `python_tree`, the first two raise RecursionError (in the
    constant reader, and inside `ast`)."""
    with pytest.raises(ActionError):
        parse_action(f"click({inner})")


def test_a_lone_surrogate_in_an_action_is_replaced_and_counted() -> None:
    """`answer('\\ud83d done')` is a lone surrogate once `ast` reads it: the parser replaces it (U+FFFD) and counts it,
    so the answer can be written. Mutant caught (tried): `_valid` returning its value unchanged."""
    action = parse_action("answer('\\ud83d done')")
    assert action.message == "\ufffd done" and action.replaced == 1
    assert parse_action(action.call) == action and parse_action(action.call).replaced == 0  # the clean call is valid
    options = parse_action("select_option('7', ['\\udc00', 'red\\ud83d\\ude00'])")
    assert options.args[1] == ["\ufffd", "red\U0001f600"] and options.replaced == 1
