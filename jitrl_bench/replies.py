"""An LLM's reply read as data: the JSON object in it, never code (nothing in a reply is evaluated).

JSON is parsed only when it nests at most MAX_DEPTH levels (`json` recurses: a reply of a thousand brackets would
raise RecursionError), and every string in it is made valid Unicode (a "\\ud83d" escape decodes to a lone surrogate).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jitrl_bench.text import valid_text

OBJECT = re.compile(r"\{.*\}", re.DOTALL)
STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
BRACKET = re.compile(r"[\[\]{}]")
MAX_DEPTH = 32
"""Deepest nesting of objects and arrays read (the replies asked for nest 3 levels)."""


@dataclass(frozen=True)
class JsonReply:
    data: dict[str, Any] | None
    problem: str
    """What was wrong ("" when `data` is the object)."""
    replaced: int = 0
    """Lone surrogates in its strings replaced by U+FFFD."""


def depth(text: str) -> int:
    """How deep the brackets outside JSON strings nest (iteratively: any length is safe to measure)."""
    deepest = level = 0
    for bracket in BRACKET.finditer(STRING.sub('""', text)):
        level += 1 if bracket.group(0) in "[{" else -1
        deepest = max(deepest, level)
    return deepest


def json_reply(text: str) -> JsonReply:
    """The outermost {...} of the reply as a dict, with valid strings; or why not: a model may wrap its JSON in prose
    or a code fence."""
    found = OBJECT.search(text)
    if found is None:
        return JsonReply(None, "no JSON object in the reply")
    if depth(found.group(0)) > MAX_DEPTH:
        return JsonReply(None, f"the JSON nests deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(found.group(0))
    except json.JSONDecodeError as e:
        return JsonReply(None, f"not valid JSON ({e.msg})")
    if not isinstance(data, dict):
        return JsonReply(None, "the JSON is not an object")
    data, replaced = valid_json(data)
    return JsonReply(data, "", replaced)


def json_object(text: str) -> tuple[dict[str, Any] | None, str]:
    """`json_reply` as (the object or None, what was wrong)."""
    reply = json_reply(text)
    return reply.data, reply.problem


def valid_json(value: Any) -> tuple[Any, int]:
    """A parsed JSON value with every string (keys too) made valid, and how many lone surrogates were replaced."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, list):
        items = [valid_json(v) for v in value]
        return [v for v, _ in items], sum(n for _, n in items)
    if isinstance(value, dict):
        pairs = [(valid_text(k), valid_json(v)) for k, v in value.items()]
        return {k: v for (k, _), (v, _) in pairs}, sum(a + b for (_, a), (_, b) in pairs)
    return value, 0
