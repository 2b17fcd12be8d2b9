"""The WebRL agent's reply parser and prompt, without a browser: the full grammar mapped onto the env's safe
operations, each malformed reply refused for its own reason, injection attempts that run nothing, and the trained
completion format. (The observation builder and recorded replies on real pages are in test_webrl.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from jitrl_bench.agents.webrl import ASSISTANT, USER, webrl_prompt
from jitrl_bench.agents.webrl_grammar import ReplyError, parse_reply, to_env_action

IDS = {"0": "a12", "4": "13", "7": "20"}


@pytest.mark.parametrize(
    ("reply", "action"),
    [
        ('do(action="Click", element="0")', "click('a12')"),
        (
            '# Element: the search box\ndo(action="Search", argument="blue shirt", element="4")',
            "fill('13', 'blue shirt')",
        ),
        ('do(action="Type", argument="it\'s \\"quoted\\"", element="4")', "fill('13', 'it\\'s \"quoted\"')"),
        ('do(action="Hover", element="7")', "hover('20')"),
        ('do(action="Select Dropdown Option", argument="Red", element="7")', "select_option('20', 'Red')"),
        ('do(action="Scroll Down")', "scroll(0.0, 480.0)"),
        ('do(action="Scroll Up")', "scroll(0.0, -480.0)"),
        ('do(action="Press Enter")', "press('13', 'Enter')"),
        ('do(action="Go Backward")', "go_back()"),
        ('do(action="Go Forward")', "go_forward()"),
        ('# Note: done\nexit(message="The answer is 42")', "send_msg_to_user('The answer is 42')"),
    ],
)
def test_the_whole_grammar_maps_onto_safe_operations(reply: str, action: str) -> None:
    mapped = to_env_action(parse_reply(reply), IDS, last_element="4")
    assert mapped.text == action
    assert mapped.then == ("press('13', 'Enter')" if '"Search"' in reply else "")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "no do(...) or exit(...) line"),
        ("I will click the button.", "not one call"),
        ('do(action="Right Click", element="0")', "unsupported action type 'Right Click'"),
        ('do(action="Wait")', "unsupported action type 'Wait'"),
        ('do(action="Switch Tab", argument="1")', "unsupported action type 'Switch Tab'"),
        ("go_backward()", "the call is neither do(...) nor exit(...)"),
        ('do("Click", "0")', "arguments must be named (action=..., argument=..., element=...)"),
        ('do(action="Click")', 'Click needs element="N", a number from the page'),
        ('do(action="Click", element=0.5)', "element must be text"),
        ('do(action="Type", element="4")', "Type needs argument="),
        ('do(action="Click", element="99")', "element 99 is not on the page"),
        ('do(action="Click", element="0", color="red")', "unknown argument(s): color"),
        ('click("0")', "the call is neither do(...) nor exit(...)"),
        ('do(action="Click", element="0"', "not one call"),
        ('do(action="Click", element="0"); do(action="Click", element="7")', "not one call"),
    ],
)
def test_malformed_replies_are_parse_failures(reply: str, reason: str) -> None:
    """Each reply is refused for its own reason (the message the agent records as `parse_failure`), not merely
    refused. Mutant caught (tried): dropping the `set(values) - {"action", "argument", "element"}` check in
    webrl_grammar.parse_reply makes the `color="red"` case a click, and any reordering of the checks changes a
    message here."""
    with pytest.raises(ReplyError) as refused:
        to_env_action(parse_reply(reply), IDS)
    assert str(refused.value) == reason


@pytest.mark.parametrize(
    "reply",
    [
        "do(action=\"Click\", element=__import__('os').system('touch {marker}'))",
        "exit(message=open('{marker}', 'w').write('x'))",
        "do(action=\"Click\", element=\"0\") or __import__('os').system('touch {marker}')",
        "exec(\"open('{marker}', 'w')\")",
    ],
)
def test_an_injection_in_a_reply_runs_nothing(reply: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ReplyError, match=r"^(every argument must be a constant|the call is neither do)"):
        parse_reply(reply.format(marker=marker))
    assert not marker.exists()


def test_the_prompt_is_the_trained_completion_format() -> None:
    prompt = webrl_prompt("Find the price", ['do(action="Click", element="3")'], "<html> page </html>", 15872)
    assert prompt == (
        "Task Instruction: Find the price\n\n"
        f'Round 0\n\n{USER}Find the price\n\n{ASSISTANT}do(action="Click", element="3")\n\n'
        f"Round 1\n\n{USER}<html> page </html>\n\n{ASSISTANT}"
    )
    later = webrl_prompt("t", ["a", "b"], "x" * 100, 60)
    history = f"Round 0\n\n{USER}t\n\n{ASSISTANT}a\n\nRound 1\n\n{USER}** Simplified html **\n\n{ASSISTANT}b\n\n"
    assert history in later and "x" * max(60 - len(history), 0) + "\n\n" in later  # the page's tail is cut
