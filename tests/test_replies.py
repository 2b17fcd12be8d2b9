"""Model text is data that can always be written and always be parsed: lone surrogates become U+FFFD (counted), and
a reply nested a thousand levels deep is an unusable reply like any other, never a RecursionError."""

from __future__ import annotations

import json

import pytest

from jitrl_bench.agents.propose import NoProposal, Proposal, ProposalConfig, parse_options, propose
from jitrl_bench.agents.reasoning_bank import complete_items, memory_items
from jitrl_bench.agents.summary import render
from jitrl_bench.agents.webrl_grammar import ReplyError, parse_reply
from jitrl_bench.contract import Generated, Prompt, Usage
from jitrl_bench.policies.verbalized import parse_confidences
from jitrl_bench.replies import MAX_DEPTH, json_reply
from jitrl_bench.rewards.evaluator import parse_scores
from jitrl_bench.text import clean_text, valid_text
from tests.agents.test_paper_protocol import OPTIONS, option, text_view
from tests.scripted import Scripted

DEEP = [
    '{"options": ' + "[" * 1000 + "]" * 1000 + "}",
    '{"items": [' + '{"a": ' * 1000 + "1" + "}" * 1000 + "]}",
    "{" + "[" * 100_000,  # cut, and deep
]


def test_valid_text_replaces_lone_surrogates_and_joins_pairs() -> None:
    """Mutant caught (tried): `valid_text` returning its input: the results do not encode."""
    assert valid_text("plain") == ("plain", 0)
    assert valid_text("caf\u00e9 \U0001f600") == ("caf\u00e9 \U0001f600", 0)
    assert valid_text("\ud83d done \udc00") == ("\ufffd done \ufffd", 2)
    assert valid_text("\ud83d\ude00!") == ("\U0001f600!", 0)  # a pair, as `ast` leaves '\ud83d\ude00', is one emoji
    for text in ("\ud83d", "a\udfffb", "\ude00\ud83d"):
        valid_text(text)[0].encode("utf-8")
    assert "\ud83d" not in clean_text("West of House \ud83d", 100)
    reply = Generated("\ud83d ok", Usage())
    assert reply.text == "\ufffd ok" and reply.replaced == 1


def test_json_strings_are_valid_and_the_replacements_counted() -> None:
    """Mutant caught (tried): not passing the parsed object through `valid_json`: the strings keep the surrogate."""
    got = json_reply('xx {"a": "\\ud83d x", "\\udc00": ["\\ud83d\\ude00", 1, {"b": "\\udfff"}]} yy')
    assert got.data == {"a": "\ufffd x", "\ufffd": ["\U0001f600", 1, {"b": "\ufffd"}]} and got.replaced == 3
    json.dumps(got.data, ensure_ascii=False).encode("utf-8")
    options, _ = parse_options(OPTIONS % (option("open \\ud83d box", 90), 1), 1)
    assert options is not None and options[0].action == "open \ufffd box"
    got_proposal = propose(ProposalConfig(mode="verbalized", k=1), Scripted([OPTIONS % (option("\\udc00 go", 90), 1)]),
                           Prompt.chat("s", "u"), text_view("north"))  # fmt: skip
    assert isinstance(got_proposal, Proposal) and got_proposal.replaced == 1
    assert [c.action for c in got_proposal.candidates] == ["\ufffd go"]


@pytest.mark.parametrize("reply", DEEP)
def test_a_reply_a_thousand_levels_deep_is_an_unusable_reply(reply: str) -> None:
    """Mutant caught (tried): without the depth bound, json.loads / raw_decode raise RecursionError."""
    assert json_reply(reply).data is None
    assert parse_options(reply, 3)[0] is None
    assert parse_confidences(reply, ["1", "2"]) is None
    assert parse_scores(reply, 2, 10)[0] is None
    assert memory_items(reply) == "" and complete_items(reply) == []
    assert render(reply)  # a summary that is not the JSON asked for is kept as text
    failed = propose(ProposalConfig(mode="verbalized", k=1), Scripted([reply, reply]), Prompt.chat("s", "u"),
                     text_view("north"))  # fmt: skip
    assert isinstance(failed, NoProposal) and "after one repair" in failed.reason  # the agent's counted fallback


def test_json_as_deep_as_the_bound_still_parses() -> None:
    nested = '{"a": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + ', "b": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}'
    assert json_reply(nested).data is not None


@pytest.mark.parametrize(
    "inner", ["-" * 3500 + "1", "(" * 1000 + "1" + ")" * 1000, "not " * 900 + "1", "x." * 1500 + "x"]
)
def test_a_webrl_reply_nested_thousands_deep_is_a_parse_failure(inner: str) -> None:
    """Mutant caught (tried): without the line-length check and the token bound, `ast` raises RecursionError on the
    first."""
    with pytest.raises(ReplyError):
        parse_reply(f"do(action={inner})")


def test_a_lone_surrogate_in_a_webrl_reply_is_replaced_and_counted() -> None:
    action = parse_reply('# Element: 3\ndo(action="Type", argument="\\ud83d shirt", element="3")')
    assert action.argument == "\ufffd shirt" and action.replaced == 1
